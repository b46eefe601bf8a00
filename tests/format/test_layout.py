"""The repository format's names and trailers (layout) and the typed readers over them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import gitml
from gitml.cli.registry import _registration_commit
from gitml.errors import InvalidRecord, NotFound
from gitml.format import layout, readers
from gitml.format.records import Config
from gitml.registry.lineage import Lineage
from gitml.registry.versions import Registry, check_name
from testing.git import FixedClock, commit_file_on_ref, git
from testing.registry import log_iris_run

# -- trailers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "trailers", "body"),
    [
        ("start run 0123abcd", [(layout.RUN, "0123abcd" * 4)], None),
        (
            "log 3 metric points to run 0123abcd",
            [(layout.RUN, "f" * 32), (layout.JOURNAL, "seg-1"), (layout.JOURNAL, "seg-12")],
            None,
        ),
        (
            "production: churn v5 (10%)",
            [(layout.STAGE, "production"), (layout.MODEL, "churn.v2-b_c"), (layout.VERSION, "5")],
            "Canary for the new features.\n\nGitml-Version looks like a trailer: it is not one",
        ),
        ("production: roll back churn", [(layout.ROLLBACK_OF, "a" * 40)], "  \n"),
    ],
)
def test_trailers_written_are_the_trailers_read(
    subject: str, trailers: list[layout.Trailer], body: str | None
) -> None:
    text = layout.message(subject, trailers, body)
    assert text.startswith(f"gitml: {subject}\n\n")
    assert layout.trailers(text) == trailers
    for key, value in trailers:
        assert layout.has_trailer(text, key, value)
        assert layout.trailer(text, key) == [v for k, v in trailers if k == key][-1]


def test_message_keeps_the_bytes_gitml_has_always_written() -> None:
    # Existing repositories hold these exact messages; the index, hooks and remotes read them.
    run = layout.message("update to run abc", [(layout.RUN, "abc"), (layout.JOURNAL, "s1")])
    assert run == "gitml: update to run abc\n\nGitml-Run: abc\nGitml-Journal: s1"
    stage = layout.message(
        "production: churn v3", [(layout.STAGE, "production"), (layout.MODEL, "churn")], "why\n"
    )
    assert (
        stage == "gitml: production: churn v3\n\nwhy\n\nGitml-Stage: production\nGitml-Model: churn"
    )


def test_a_trailer_is_a_whole_line_with_one_exact_value() -> None:
    text = layout.message("x", [(layout.JOURNAL, "seg-12"), (layout.RUN, "r1")])
    assert not layout.has_trailer(text, layout.JOURNAL, "seg-1")  # no prefix match
    assert not layout.has_trailer(text, layout.RUN, "r")
    assert layout.trailer(text, layout.STAGE) is None
    # A forge's squash merge adds a paragraph after gitml's trailers: they still count.
    squashed = text + "\n\nCo-authored-by: Ada <ada@example.com>\n"
    assert layout.trailers(squashed) == [(layout.JOURNAL, "seg-12"), (layout.RUN, "r1")]


def test_map_trailer_changes_only_that_key() -> None:
    text = layout.message(
        "register churn version 5 from run abc",
        [(layout.MODEL, "churn"), (layout.VERSION, "5"), (layout.RUN, "5")],
    )
    renumbered = layout.map_trailer(text, layout.VERSION, lambda v: str(int(v) + 1))
    assert layout.trailers(renumbered) == [
        (layout.MODEL, "churn"),
        (layout.VERSION, "6"),
        (layout.RUN, "5"),
    ]
    assert renumbered.splitlines()[0] == text.splitlines()[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "gitml: register churn version 12 from run abc\n\n"
            "Gitml-Model: churn\nGitml-Version: 12\nGitml-Run: abc",
            layout.Registration("churn", 12, "abc"),
        ),
        # Another tool's subject: the trailers, not the subject, say what the commit is.
        (
            "Register churn v3 by hand\n\nGitml-Model: churn\nGitml-Version: 3\nGitml-Run: r9",
            layout.Registration("churn", 3, "r9"),
        ),
        # A stage change names a version but no run.
        (
            "gitml: production: churn v3\n\nGitml-Stage: production\nGitml-Model: churn\n"
            "Gitml-Version: 3",
            None,
        ),
        # An edit of a version names no version trailer, whatever its subject says.
        ("gitml: register churn version 3\n\nGitml-Model: churn", None),
        ("gitml: x\n\nGitml-Model: churn\nGitml-Version: three\nGitml-Run: abc", None),
    ],
)
def test_registration_is_decided_by_the_trailers(
    text: str, expected: layout.Registration | None
) -> None:
    assert layout.registration(text) == expected


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["churn", "a", "Churn.v2", "a-b_c.d-e", "9lives", "x" * 200])
def test_model_and_stage_refs_are_names_git_accepts(repo: Path, name: str) -> None:
    assert check_name(name) == name
    ref = layout.model_ref(name)
    assert ref == f"refs/gitml/models/{name}"
    assert layout.name_under(layout.MODELS, ref) == name
    git(repo, "check-ref-format", ref)
    branch = layout.proposal_branch("staging", name, 12)
    assert branch == f"refs/heads/gitml/proposals/staging/{name}-v12"
    git(repo, "check-ref-format", branch)
    assert layout.declaration_path(name) == f"models/{name}.yaml"
    assert layout.declared_model(f"{name}.yaml") == name


def test_names_under_other_prefixes_are_not_theirs() -> None:
    assert layout.name_under(layout.RUNS, layout.model_ref("churn")) is None
    assert layout.name_under(layout.STAGES, layout.proposal_branch("prod", "m", 1)) == (
        "proposals/prod/m-v1"
    )
    assert layout.stage_branch("production") == "refs/heads/gitml/production"
    assert layout.run_ref("ab" * 16) == "refs/gitml/runs/" + "ab" * 16
    assert layout.experiment_ref("0") == "refs/gitml/experiments/0"
    assert layout.remote_stages("origin") == "refs/remotes/origin/gitml/"


@pytest.mark.parametrize(
    ("path", "number"),
    [
        ("versions/1.yaml", 1),
        ("versions/10.yaml", 10),
        ("versions/0.yaml", None),
        ("versions/01.yaml", None),
        ("versions/1.yml", None),
        ("versions/1.yaml/x", None),
        ("versions/a/1.yaml", None),
        ("models/1.yaml", None),
    ],
)
def test_version_paths(path: str, number: int | None) -> None:
    assert layout.version_number(path) == number
    if number is not None:
        assert layout.version_path(number) == path


# -- readers ---------------------------------------------------------------------------------


def test_read_run_refuses_a_record_on_another_runs_ref(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run(run_name="real")
    client.flush()
    other = "0" * 32
    git(repo, "update-ref", layout.run_ref(other), layout.run_ref(run.id))
    assert readers.read_run(client.store, run.id).id == run.id
    with pytest.raises(InvalidRecord) as caught:
        readers.read_run(client.store, other)
    err = caught.value
    assert (err.where, err.path, err.field) == (layout.run_ref(other), "run.yaml", "id")
    assert err.reason == f"'{run.id}' does not match the ref name"
    with pytest.raises(NotFound, match=f"no run with id '{'1' * 32}'"):
        readers.read_run(client.store, "1" * 32)


def test_read_version_and_declaration_refuse_names_that_disagree(repo: Path) -> None:
    client = gitml.Client()
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    text = git(repo, "show", f"{layout.model_ref('churn')}:versions/1.yaml")
    commit_file_on_ref(repo, layout.model_ref("churn"), "versions/2.yaml", text)
    with pytest.raises(InvalidRecord) as caught:
        readers.read_version(client.store, "churn", 2)
    assert (caught.value.path, caught.value.field) == ("versions/2.yaml", "version")
    assert caught.value.reason == "1 does not match the file"
    with pytest.raises(NotFound, match="model 'churn' has no version 3"):
        readers.read_version(client.store, "churn", 3)

    git(repo, "update-ref", layout.model_ref("other"), layout.model_ref("churn"))
    with pytest.raises(InvalidRecord) as caught:
        readers.read_version(client.store, "other", 1)
    assert (caught.value.where, caught.value.field) == (layout.model_ref("other"), "name")

    declared = b"model: churn\nversions:\n- version: 1\n  weight: 100\n"
    with pytest.raises(InvalidRecord) as caught:
        readers.parse_declaration(declared, "production", "other")
    assert (caught.value.where, caught.value.path, caught.value.field) == (
        layout.stage_branch("production"),
        "models/other.yaml",
        "model",
    )
    assert readers.parse_declaration(declared, "production", "churn").model == "churn"


def test_registration_commit_is_the_one_its_trailers_name(repo: Path) -> None:
    """The CLI matched ``Gitml-Version: 1`` as a substring (so version 10's commit answered
    for version 1) and lineage wanted two parents; both now ask the trailers."""
    client = gitml.Client(clock=FixedClock())
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    for number in range(1, 11):
        assert registry.register(f"runs:/{run_id}/model", "churn").version == number
    store = client.store
    walker = Lineage(store, Config())
    for number in (1, 10):
        found = readers.registration_commit(store, "churn", number)
        assert found is not None
        added = git(repo, "diff", "--name-only", f"{found.sha}^1", found.sha)
        assert added.split() == [f"versions/{number}.yaml"]
        assert found.parents[1] == store.tip(layout.run_ref(run_id))
        assert _registration_commit(registry, "churn", number) == found.sha
        registered = walker.registration("churn", number)
        assert registered is not None and registered.sha == found.sha
    assert readers.registration_commit(store, "churn", 11) is None
    assert readers.registration_commit(store, "nothing", 1) is None


def test_a_registration_without_its_second_parent_is_still_found(repo: Path) -> None:
    """A registration whose run commit is not a parent (written by another tool): lineage
    found nothing (it wanted two parents) while the CLI found it by its subject."""
    client = gitml.Client(clock=FixedClock())
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    ref = layout.model_ref("churn")
    text = re.sub(r"(?m)^version: 1$", "version: 2", git(repo, "show", f"{ref}:versions/1.yaml"))
    tree_commit = commit_file_on_ref(repo, ref, "versions/2.yaml", text)
    tree = git(repo, "rev-parse", f"{tree_commit}^{{tree}}").strip()
    message = layout.message(
        f"register churn version 2 from run {run_id[:12]}",
        [(layout.MODEL, "churn"), (layout.VERSION, "2"), (layout.RUN, run_id)],
    )
    single = git(repo, "commit-tree", tree, "-p", f"{tree_commit}^", "-m", message).strip()
    git(repo, "update-ref", ref, single)
    found = readers.registration_commit(client.store, "churn", 2)
    assert found is not None and found.sha == single
    assert _registration_commit(registry, "churn", 2) == single
    doc = Lineage(client.store, Config()).of_version("churn", 2)
    assert doc["registration"]["commit"] == single
    assert doc["run"]["commit"] == registry.get_version("churn", 2).run_commit


# -- layering -------------------------------------------------------------------------------


def test_the_format_imports_nothing_above_it() -> None:
    above = ("tracking", "registry", "serving", "server", "cli", "models", "query")
    above += ("projects", "artifacts", "mlflow")
    folder = Path(gitml.__file__).parent / "format"
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "gitml" and len(parts) > 1 and parts[1] in above:
                    found.append(f"{path.name}:{node.lineno} imports {name}")
    assert found == []
