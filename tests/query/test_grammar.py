"""MLflow's filter and order_by grammar: the ASTs it gives and the errors it raises."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitml.errors import InvalidInput
from gitml.query.grammar import (
    MAX_DEPTH,
    OPERATORS,
    And,
    Comparison,
    Expr,
    FilterSyntaxError,
    Identifier,
    Or,
    OrderKey,
    parse_filter,
    parse_order_by,
)


def metric(key: str) -> Identifier:
    return Identifier("metric", key)


def param(key: str) -> Identifier:
    return Identifier("param", key)


def tag(key: str) -> Identifier:
    return Identifier("tag", key)


def attr(key: str) -> Identifier:
    return Identifier("attribute", key)


def dataset(key: str) -> Identifier:
    return Identifier("dataset", key)


def cmp(ident: Identifier, op: str, value: str | float | tuple[str, ...] | None) -> Comparison:
    return Comparison(ident, op, value)


# -- valid filters: MLflow's documented examples, then the rest of the grammar -----

MLFLOW_DOC_EXAMPLES: list[tuple[str, Expr]] = [
    ("metrics.accuracy > 0.92", cmp(metric("accuracy"), ">", 0.92)),
    (
        'params.model = "LogisticRegression" and params.lambda = "0.001" and metrics.error <= 0.05',
        And(
            (
                cmp(param("model"), "=", "LogisticRegression"),
                cmp(param("lambda"), "=", "0.001"),
                cmp(metric("error"), "<=", 0.05),
            )
        ),
    ),
    ('attributes.status = "FAILED"', cmp(attr("status"), "=", "FAILED")),
    ('metrics."accuracy" > 0.72', cmp(metric("accuracy"), ">", 0.72)),
    ("metrics.loss <= 0.15", cmp(metric("loss"), "<=", 0.15)),
    ("metrics.`log-scale-loss` <= 0", cmp(metric("log-scale-loss"), "<=", 0.0)),
    ("metrics.`f1 score` >= 0.5", cmp(metric("f1 score"), ">=", 0.5)),
    ("metrics.accuracy != 0.15", cmp(metric("accuracy"), "!=", 0.15)),
    ("metrics.`cross-entropy-loss` < 0.5", cmp(metric("cross-entropy-loss"), "<", 0.5)),
    (
        'params.`1st_iteration_timestamp` = "2022-01-01"',
        cmp(param("1st_iteration_timestamp"), "=", "2022-01-01"),
    ),
    ('params.batch_size = "2"', cmp(param("batch_size"), "=", "2")),
    ('params.model LIKE "GPT%"', cmp(param("model"), "LIKE", "GPT%")),
    ('params.model ILIKE "gPt%"', cmp(param("model"), "ILIKE", "gPt%")),
    ('params.batch_size != "None"', cmp(param("batch_size"), "!=", "None")),
    ('tags."environment" = "notebook"', cmp(tag("environment"), "=", "notebook")),
    ('tags.task ILIKE "classif%"', cmp(tag("task"), "ILIKE", "classif%")),
    ("tag.`test` = 'abc'", cmp(tag("test"), "=", "abc")),
    ('tag.`test` = "abc"', cmp(tag("test"), "=", "abc")),
    ('tag."test" = "abc"', cmp(tag("test"), "=", "abc")),
    ('datasets.name LIKE "custom"', cmp(dataset("name"), "LIKE", "custom")),
    (
        "datasets.digest IN ('s8ds293b', 'jks834s2')",
        cmp(dataset("digest"), "IN", ("s8ds293b", "jks834s2")),
    ),
    ('datasets.context = "train"', cmp(dataset("context"), "=", "train")),
    ('attributes.user_id LIKE "user1"', cmp(attr("user_id"), "LIKE", "user1")),
    ('attributes.run_name = "my-run"', cmp(attr("run_name"), "=", "my-run")),
    ('attributes.run_id = "a1b2c3d4"', cmp(attr("run_id"), "=", "a1b2c3d4")),
    (
        "attributes.run_id IN ('a1b2c3d4', 'e5f6g7h8')",
        cmp(attr("run_id"), "IN", ("a1b2c3d4", "e5f6g7h8")),
    ),
    ("attributes.start_time >= 1664067852747", cmp(attr("start_time"), ">=", 1664067852747.0)),
    ("attributes.end_time < 1664067852747", cmp(attr("end_time"), "<", 1664067852747.0)),
    ("attributes.created > 1664067852747", cmp(attr("start_time"), ">", 1664067852747.0)),
    (
        "metrics.loss <= 0.15 AND metrics.loss >= 0.1",
        And((cmp(metric("loss"), "<=", 0.15), cmp(metric("loss"), ">=", 0.1))),
    ),
    (
        "metrics.accuracy > 0.72 AND metrics.batch_size != 0 AND "
        "attributes.run_id IN ('a1b2c3d4', 'e5f6g7h8')",
        And(
            (
                cmp(metric("accuracy"), ">", 0.72),
                cmp(metric("batch_size"), "!=", 0.0),
                cmp(attr("run_id"), "IN", ("a1b2c3d4", "e5f6g7h8")),
            )
        ),
    ),
]

MORE_VALID: list[tuple[str, Expr]] = [
    # bare attributes and their aliases
    ("status = 'RUNNING'", cmp(attr("status"), "=", "RUNNING")),
    ("run_id NOT IN ('a')", cmp(attr("run_id"), "NOT IN", ("a",))),
    ("created < 5", cmp(attr("start_time"), "<", 5.0)),
    ("Created < 5", cmp(attr("start_time"), "<", 5.0)),
    ("`Run name` = 'x'", cmp(attr("run_name"), "=", "x")),
    ("\"run name\" = 'x'", cmp(attr("run_name"), "=", "x")),
    ("attributes.`Run Name` LIKE 'x%'", cmp(attr("run_name"), "LIKE", "x%")),
    ("attr.artifact_uri = 'runs:/a/'", cmp(attr("artifact_uri"), "=", "runs:/a/")),
    ("run.end_time IS NULL", cmp(attr("end_time"), "IS NULL", None)),
    ("`attributes`.status = 'x'", cmp(attr("status"), "=", "x")),
    # dotted bare keys, quoting and escapes
    ("tags.mlflow.source.name = 'train.py'", cmp(tag("mlflow.source.name"), "=", "train.py")),
    ("tags.`mlflow.runName` = 'a'", cmp(tag("mlflow.runName"), "=", "a")),
    ("params.`a``b` = 'x'", cmp(param("a`b"), "=", "x")),
    ("metrics.'f1 score' > 0.5", cmp(metric("f1 score"), ">", 0.5)),
    ("params.'a''b' = 'x'", cmp(param("a'b"), "=", "x")),
    ('params."a""b" = \'x\'', cmp(param('a"b'), "=", "x")),
    ("params.x = 'it''s'", cmp(param("x"), "=", "it's")),
    ('params.x = "say ""hi"""', cmp(param("x"), "=", 'say "hi"')),
    ("params.x = ''", cmp(param("x"), "=", "")),
    ("params.x = 'a\\_b'", cmp(param("x"), "=", "a\\_b")),
    ("params.ключ = 'значение'", cmp(param("ключ"), "=", "значение")),
    ("params.x='a'", cmp(param("x"), "=", "a")),
    # numbers
    ("metrics.x > -1", cmp(metric("x"), ">", -1.0)),
    ("metrics.x > +1", cmp(metric("x"), ">", 1.0)),
    ("metrics.x > .5", cmp(metric("x"), ">", 0.5)),
    ("metrics.x > 5.", cmp(metric("x"), ">", 5.0)),
    ("metrics.x > 1e3", cmp(metric("x"), ">", 1000.0)),
    ("metrics.x > 1.5E-3", cmp(metric("x"), ">", 0.0015)),
    ("metrics.x < 1e999", cmp(metric("x"), "<", float("inf"))),
    ("metrics.x>=-2", cmp(metric("x"), ">=", -2.0)),
    # gitml's IS [NOT] NULL
    ("metrics.x IS NULL", cmp(metric("x"), "IS NULL", None)),
    ("params.x is not null", cmp(param("x"), "IS NOT NULL", None)),
    ("tags.x Is  Not\tNull", cmp(tag("x"), "IS NOT NULL", None)),
    # IN lists
    ("run_id IN ('a')", cmp(attr("run_id"), "IN", ("a",))),
    ("run_id IN ('a',)", cmp(attr("run_id"), "IN", ("a",))),
    ("run_id in ( \"a\" , 'b' )", cmp(attr("run_id"), "IN", ("a", "b"))),
    ("run_id not  in('a','a')", cmp(attr("run_id"), "NOT IN", ("a", "a"))),
    ("datasets.context NOT IN ('train')", cmp(dataset("context"), "NOT IN", ("train",))),
    # keywords in any case, whitespace anywhere between tokens
    (
        "  metrics.a > 1\nand\tmetrics.b < 2  ",
        And((cmp(metric("a"), ">", 1.0), cmp(metric("b"), "<", 2.0))),
    ),
    ("params.x like 'a'", cmp(param("x"), "LIKE", "a")),
    ("params.x iLike 'a'", cmp(param("x"), "ILIKE", "a")),
]


@pytest.mark.parametrize(("text", "expected"), MLFLOW_DOC_EXAMPLES + MORE_VALID)
def test_valid_filters(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", [None, "", " ", "\n\t  "])
def test_no_filter(text: str | None) -> None:
    assert parse_filter(text) is None


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        ("metric", "metric"),
        ("metrics", "metric"),
        ("param", "param"),
        ("params", "param"),
        ("parameter", "param"),
        ("parameters", "param"),
        ("tag", "tag"),
        ("tags", "tag"),
    ],
)
def test_prefix_aliases(prefix: str, kind: str) -> None:
    value = "1" if kind == "metric" else "'1'"
    parsed = parse_filter(f"{prefix}.k = {value}")
    assert isinstance(parsed, Comparison)
    assert parsed.ident == Identifier(kind, "k")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["attribute", "attributes", "attr", "run"])
def test_attribute_prefix_aliases(prefix: str) -> None:
    assert parse_filter(f"{prefix}.status = 'x'") == cmp(attr("status"), "=", "x")


@pytest.mark.parametrize("prefix", ["dataset", "datasets"])
def test_dataset_prefix_aliases(prefix: str) -> None:
    assert parse_filter(f"{prefix}.name = 'x'") == cmp(dataset("name"), "=", "x")


# -- precedence and parentheses ---------------------------------------------------

A = cmp(metric("a"), ">", 1.0)
B = cmp(metric("b"), ">", 2.0)
C = cmp(metric("c"), ">", 3.0)
D = cmp(metric("d"), ">", 4.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.a > 1 OR metrics.b > 2 AND metrics.c > 3", Or((A, And((B, C))))),
        ("metrics.a > 1 AND metrics.b > 2 OR metrics.c > 3", Or((And((A, B)), C))),
        ("(metrics.a > 1 OR metrics.b > 2) AND metrics.c > 3", And((Or((A, B)), C))),
        ("metrics.a > 1 and (metrics.b > 2 or metrics.c > 3)", And((A, Or((B, C))))),
        ("((metrics.a > 1))", A),
        ("(metrics.a > 1) AND (metrics.b > 2)", And((A, B))),
        # nested groups of the same connective flatten
        ("metrics.a > 1 AND (metrics.b > 2 AND metrics.c > 3)", And((A, B, C))),
        ("(metrics.a > 1 OR metrics.b > 2) OR (metrics.c > 3 OR metrics.d > 4)", Or((A, B, C, D))),
        (
            "metrics.a > 1 AND metrics.b > 2 OR metrics.c > 3 AND metrics.d > 4",
            Or((And((A, B)), And((C, D)))),
        ),
        ("(metrics.a>1)or(metrics.b>2)", Or((A, B))),
    ],
)
def test_precedence(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


def test_nesting_up_to_the_cap() -> None:
    text = "(" * MAX_DEPTH + "metrics.a > 1" + ")" * MAX_DEPTH
    assert parse_filter(text) == A


def test_nesting_beyond_the_cap() -> None:
    text = "(" * (MAX_DEPTH + 1) + "metrics.a > 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterSyntaxError, match="nested deeper") as caught:
        parse_filter(text)
    assert caught.value.position == MAX_DEPTH


def test_very_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(FilterSyntaxError):
        parse_filter("(" * 100_000)


def test_long_chains_need_no_recursion() -> None:
    text = " AND ".join(f"metrics.m{i} > {i}" for i in range(5000))
    parsed = parse_filter(text)
    assert isinstance(parsed, And)
    assert len(parsed.parts) == 5000


# -- operators per kind ---------------------------------------------------------

ALL_OPS = (
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "LIKE",
    "ILIKE",
    "IN",
    "NOT IN",
    "IS NULL",
    "IS NOT NULL",
)
IDENTS = {
    "metric": "metrics.m",
    "param": "params.p",
    "tag": "tags.t",
    "dataset": "datasets.name",
    "attribute": "attributes.status",
    "attribute.run_id": "attributes.run_id",
    "attribute.start_time": "attributes.start_time",
    "attribute.end_time": "attributes.end_time",
}


def _filter_with(kind: str, op: str) -> str:
    numeric = kind in ("metric", "attribute.start_time", "attribute.end_time")
    if op in ("IS NULL", "IS NOT NULL"):
        value = ""
    elif op in ("IN", "NOT IN"):
        value = "('a', 'b')"
    else:
        value = "1" if numeric else "'a'"
    return f"{IDENTS[kind]} {op} {value}".rstrip()


@pytest.mark.parametrize("kind", sorted(IDENTS))
@pytest.mark.parametrize("op", ALL_OPS)
def test_operators_per_kind(kind: str, op: str) -> None:
    text = _filter_with(kind, op)
    if op in OPERATORS[kind]:
        parsed = parse_filter(text)
        assert isinstance(parsed, Comparison)
        assert parsed.op == op
    else:
        with pytest.raises(FilterSyntaxError, match=f"operator {op} is not supported") as caught:
            parse_filter(text)
        assert caught.value.position == len(IDENTS[kind]) + 1


def test_operator_tables_follow_mlflow() -> None:
    # mlflow/utils/search_utils.py, SearchUtils.VALID_*_COMPARATORS, plus gitml's IS [NOT] NULL
    assert set(OPERATORS["metric"]) == {"=", "!=", "<", "<=", ">", ">=", "IS NULL", "IS NOT NULL"}
    assert set(OPERATORS["param"]) == {"=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"}
    assert OPERATORS["tag"] == OPERATORS["param"]
    assert set(OPERATORS["dataset"]) == {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}
    assert set(OPERATORS["attribute"]) == {"=", "!=", "LIKE", "ILIKE"}
    assert set(OPERATORS["attribute.run_id"]) == {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}
    assert set(OPERATORS["attribute.start_time"]) == {"=", "!=", "<", "<=", ">", ">="}


# -- errors: message, filter, caret -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        # missing value
        ("metrics.x >", 11, "expected a number"),
        ("metrics.x > AND metrics.y > 1", 12, "expected a number"),
        ("params.x =", 10, "expected a quoted string"),
        ("run_id IN", 9, "expected '('"),
        # unknown prefix, attribute, dataset field
        ("foo.x = 1", 0, "unknown identifier type 'foo'"),
        ("metrics.a > 1 AND Metrics.b > 1", 18, "unknown identifier type 'Metrics'"),
        ("accuracy > 0.5", 0, "unknown attribute 'accuracy'"),
        ("attributes.lifecycle_stage = 'active'", 11, "unknown attribute 'lifecycle_stage'"),
        ("attributes.experiment_id = '1'", 11, "unknown attribute 'experiment_id'"),
        ("datasets.size = 'x'", 9, "unknown dataset field 'size'"),
        ("metrics. > 1", 8, "expected a key after 'metrics.'"),
        ("metrics.`` > 1", 8, "empty quoted key"),
        ("params.'x > 1", 7, "unclosed string: no closing '"),
        # bad operator for the type
        ("metrics.x LIKE 'a'", 10, "operator LIKE is not supported for metrics"),
        ("params.x > '1'", 9, "operator > is not supported for params"),
        ("params.x IN ('a')", 9, "operator IN is not supported for params"),
        ("attributes.run_name IN ('a')", 20, "operator IN is not supported for attribute run_name"),
        ("attributes.start_time LIKE '1'", 22, "operator LIKE is not supported"),
        ("attributes.status IS NULL", 18, "operator IS NULL is not supported"),
        ("metrics.x == 1", 10, "unknown operator '=='"),
        ("metrics.x <> 1", 10, "unknown operator '<>'"),
        ("params.x NOT LIKE 'a'", 13, "expected IN after NOT"),
        ("params.x IS 'a'", 12, "expected NULL or NOT NULL after IS"),
        ("params.x IS NOT 'a'", 16, "expected NULL after IS NOT"),
        ("metrics.x ~ 1", 10, "expected a comparison operator"),
        ("metrics.log-loss < 1", 11, "quote keys with special characters in backticks"),
        # type errors point at the value
        ("metrics.x = 'abc'", 12, "expected a number, found a quoted value"),
        ("attributes.start_time > '5'", 24, "expected a number, found a quoted value"),
        ("metrics.x = abc", 12, "expected a number"),
        ("metrics.x = 1abc", 12, "expected a number"),
        ("metrics.x = 1.2.3", 12, "expected a number"),
        ("params.x = 1", 11, "expected a quoted string"),
        ("params.x = abc", 11, "expected a quoted string"),
        ("tags.x = `abc`", 9, "backticks quote keys, not values"),
        ("run_id IN (1, 2)", 11, "expected a quoted string in the list"),
        ("run_id IN ()", 11, "non-empty list"),
        ("run_id IN ('a' 'b')", 15, "expected ',' or ')'"),
        # unclosed quotes
        ("params.x = 'abc", 11, "unclosed string"),
        ('params.x = "abc', 11, "unclosed string"),
        ("metrics.`abc > 1", 8, "unclosed key"),
        ("params.x = 'it''s", 11, "unclosed string"),
        # unbalanced parentheses
        ("(metrics.x > 1", 0, "unclosed '('"),
        ("metrics.a > 1 AND ((metrics.x > 1)", 18, "unclosed '('"),
        ("metrics.x > 1)", 13, "unbalanced ')'"),
        ("(metrics.x > 1))", 15, "unbalanced ')'"),
        ("()", 1, "expected an identifier"),
        ("(metrics.x > 1 metrics.y > 2)", 15, "expected AND, OR or ')'"),
        ("run_id IN ('a'", 10, "unclosed '('"),
        # trailing garbage, dangling connectives
        ("metrics.x > 1 foo", 14, "expected AND, OR or the end of the filter, found 'foo'"),
        ("metrics.x > 1 AND", 17, "expected an identifier"),
        ("metrics.x > 1 OR ", 17, "found end of filter"),
        ("AND metrics.x > 1", 0, "expected an identifier such as metrics.<key>"),
        ("metrics.x > 1 AND OR metrics.y > 1", 18, "found 'OR'"),
        ("metrics.x > 1; DROP TABLE runs", 13, "found ';'"),
        ("metrics.x > 1 && metrics.y > 2", 14, "found '&'"),
    ],
)
def test_errors_point_at_the_problem(text: str, position: int, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)
    error = caught.value
    assert message in error.expected
    assert (error.text, error.position) == (text, position)
    first, shown, caret = str(error).split("\n")
    assert first == error.expected
    assert shown == "  " + text
    assert caret == "  " + " " * position + "^"


def test_error_lines_stay_aligned_for_control_characters() -> None:
    text = "metrics.x >\n\t'a'"
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)
    _, shown, caret = str(caught.value).split("\n")
    assert caught.value.position == 13
    assert shown == "  metrics.x >  'a'"
    assert shown[caret.index("^")] == "'"


def test_the_error_is_invalid_input_and_pickles() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter("metrics.x >")
    assert isinstance(caught.value, FilterSyntaxError)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.text, copy.position, str(copy)) == ("metrics.x >", 11, str(caught.value))


# -- order_by ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("metrics.rmse", OrderKey(metric("rmse"), True)),
        ("metrics.rmse ASC", OrderKey(metric("rmse"), True)),
        ("metrics.rmse DESC", OrderKey(metric("rmse"), False)),
        ("metrics.rmse desc", OrderKey(metric("rmse"), False)),
        ("  metric.`f1 score`   Desc ", OrderKey(metric("f1 score"), False)),
        ('params."learning rate" asc', OrderKey(param("learning rate"), True)),
        ("tags.mlflow.runName", OrderKey(tag("mlflow.runName"), True)),
        ("start_time DESC", OrderKey(attr("start_time"), False)),
        ("attributes.created", OrderKey(attr("start_time"), True)),
        ("Created DESC", OrderKey(attr("start_time"), False)),
        ("attribute.run_name", OrderKey(attr("run_name"), True)),
        ("run_id", OrderKey(attr("run_id"), True)),
        ("end_time DESC", OrderKey(attr("end_time"), False)),
        ("user_id", OrderKey(attr("user_id"), True)),
        ("status", OrderKey(attr("status"), True)),
        ("artifact_uri", OrderKey(attr("artifact_uri"), True)),
        ("metrics.`a`DESC", OrderKey(metric("a"), False)),
    ],
)
def test_order_by_clauses(clause: str, expected: OrderKey) -> None:
    assert parse_order_by([clause]) == [expected]


def test_order_by_keeps_the_order_given() -> None:
    assert parse_order_by(["metrics.a DESC", "params.b", "start_time"]) == [
        OrderKey(metric("a"), False),
        OrderKey(param("b"), True),
        OrderKey(attr("start_time"), True),
    ]


def test_no_order_by() -> None:
    assert parse_order_by(None) == []
    assert parse_order_by([]) == []


def test_a_lone_string_is_one_clause() -> None:
    assert parse_order_by("metrics.a DESC") == [OrderKey(metric("a"), False)]


@pytest.mark.parametrize(
    ("clauses", "text", "position", "message"),
    [
        ([""], "", 0, "expected an identifier"),
        (["   "], "   ", 3, "found end of order_by clause"),
        (["metrics.a DOWN"], "metrics.a DOWN", 10, "expected ASC, DESC or the end of the clause"),
        (["metrics.a DESC ASC"], "metrics.a DESC ASC", 15, "expected the end of the clause"),
        (["metrics.a, metrics.b"], "metrics.a, metrics.b", 9, "found ','"),
        (["datasets.name"], "datasets.name", 0, "datasets cannot be used in order_by"),
        (["foo.bar"], "foo.bar", 0, "unknown identifier type 'foo'"),
        (["`Run name`"], "`Run name`", 0, "unknown attribute 'Run name'"),
        (["lifecycle_stage"], "lifecycle_stage", 0, "unknown attribute 'lifecycle_stage'"),
        (["metrics.`a"], "metrics.`a", 8, "unclosed key"),
        (["metrics.a", "metrics.a DESC"], "metrics.a DESC", 0, "names this field twice"),
        (["start_time", "  created DESC"], "  created DESC", 2, "names this field twice"),
        (["metrics.a", "params.a", "metric.a"], "metric.a", 0, "names this field twice"),
    ],
)
def test_order_by_errors(clauses: list[str], text: str, position: int, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_order_by(clauses)
    assert message in caught.value.expected
    assert (caught.value.text, caught.value.position) == (text, position)
    assert str(caught.value).split("\n")[2] == "  " + " " * position + "^"


def test_order_by_rejects_non_strings() -> None:
    with pytest.raises(FilterSyntaxError):
        parse_order_by([3])  # type: ignore[list-item]


# -- fuzzing: any text gives an AST or a FilterSyntaxError ------------------------

TOKENS = [
    "metrics.a",
    "params.b",
    "tags.c",
    "attributes.status",
    "run_id",
    "created",
    "datasets.name",
    "metrics.`x y`",
    'params."p q"',
    "foo.bar",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "LIKE",
    "ilike",
    "IN",
    "NOT",
    "IS",
    "NULL",
    "AND",
    "or",
    "(",
    ")",
    ",",
    "'v'",
    '"w"',
    "'",
    '"',
    "`",
    "1",
    "-2.5",
    "1e9",
    ".",
    "DESC",
    "asc",
    "\\",
    "%",
]

token_text = st.lists(st.sampled_from(TOKENS), max_size=25).flatmap(
    lambda tokens: st.sampled_from([" ".join(tokens), "".join(tokens)])
)


def _parses_or_raises_syntax_error(text: str) -> None:
    try:
        result = parse_filter(text)
    except FilterSyntaxError as error:
        assert 0 <= error.position <= len(text)
        assert error.text == text
        return
    assert result is None or isinstance(result, Comparison | And | Or)


@settings(max_examples=400, deadline=None, database=None)
@given(st.text(max_size=200))
def test_fuzz_filter_with_any_text(text: str) -> None:
    _parses_or_raises_syntax_error(text)


@settings(max_examples=600, deadline=None, database=None)
@given(token_text)
def test_fuzz_filter_with_grammar_tokens(text: str) -> None:
    _parses_or_raises_syntax_error(text)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.one_of(st.text(max_size=60), token_text), max_size=4))
def test_fuzz_order_by(clauses: list[str]) -> None:
    try:
        keys = parse_order_by(clauses)
    except FilterSyntaxError as error:
        assert error.text in clauses
        assert 0 <= error.position <= len(error.text)
        return
    assert len(keys) == len(clauses)
    assert len({key.ident for key in keys}) == len(keys)


def _render(expr: Expr) -> str:
    """Filter text for an AST (the printer the round-trip test needs)."""
    if isinstance(expr, And | Or):
        word = " AND " if isinstance(expr, And) else " OR "
        return word.join(f"({_render(part)})" for part in expr.parts)
    prefix = {"metric": "metrics", "param": "params", "tag": "tags"}[expr.ident.kind]
    key = "`" + expr.ident.key.replace("`", "``") + "`"
    if expr.value is None:
        return f"{prefix}.{key} {expr.op}"
    if isinstance(expr.value, float):
        return f"{prefix}.{key} {expr.op} {expr.value!r}"
    assert isinstance(expr.value, str)
    return f"{prefix}.{key} {expr.op} '" + expr.value.replace("'", "''") + "'"


keys = st.text(min_size=1, max_size=8)
strings = st.text(max_size=8)
numbers = st.floats(allow_nan=False, allow_infinity=False)
comparisons = st.one_of(
    st.builds(
        Comparison,
        st.builds(Identifier, st.just("metric"), keys),
        st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
        numbers,
    ),
    st.builds(
        Comparison,
        st.builds(Identifier, st.sampled_from(["param", "tag"]), keys),
        st.sampled_from(["=", "!=", "LIKE", "ILIKE"]),
        strings,
    ),
    st.builds(
        Comparison,
        st.builds(Identifier, st.sampled_from(["metric", "param", "tag"]), keys),
        st.sampled_from(["IS NULL", "IS NOT NULL"]),
        st.none(),
    ),
)
expressions = st.recursive(
    comparisons,
    lambda children: st.one_of(
        st.builds(And, st.lists(children, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(children, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)


def _normal(expr: Expr) -> Expr:
    """The AST with nested And-in-And and Or-in-Or flattened, as the parser builds it."""
    if isinstance(expr, Comparison):
        return expr
    parts: list[Expr] = []
    for part in map(_normal, expr.parts):
        parts.extend(part.parts if type(part) is type(expr) else (part,))
    return type(expr)(tuple(parts))


@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None)
@given(expressions)
def test_rendered_asts_parse_back(expr: Expr) -> None:
    assert parse_filter(_render(expr)) == _normal(expr)
