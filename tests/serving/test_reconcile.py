"""The reconciler in process, following a local repository (no HTTP).

Most tests count loads with ``CountingLoader`` (each version predicts its own
number); the failure cases that are about loading use the real loader.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import gitml
from gitml.errors import InvalidInput, NotFound
from gitml.format import yamlio
from gitml.format.records import StageDeclaration
from gitml.registry.declarations import branch
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.serving.reconcile import (
    FetchError,
    LoadedVersion,
    ModelRoute,
    Reconciler,
    RemoteSource,
    load_version,
    parse_interval,
)
from testing.git import commit_file_on_ref, git, init_repo
from testing.reconcile import (
    EXAMPLE,
    STAGE,
    CountingLoader,
    CountingSource,
    VersionNumber,
    push,
    write_declaration,
)


@pytest.fixture
def loader() -> CountingLoader:
    return CountingLoader()


@pytest.fixture
def source(client: gitml.Client) -> CountingSource:
    return CountingSource(client.store)


@pytest.fixture
def reconciler(client: gitml.Client, source: CountingSource, loader: CountingLoader) -> Reconciler:
    return Reconciler(source, STAGE, client.config, loader=loader)


def served(reconciler: Reconciler) -> dict[str, list[tuple[int, int]]]:
    current = reconciler.current
    assert current is not None
    return {n: [(v.version, v.weight) for v in r.versions] for n, r in current.models.items()}


def answer(reconciler: Reconciler, model: str = "adder", pinned: int | None = None) -> object:
    current = reconciler.current
    assert current is not None
    return current.models[model].pick(pinned).predictor.predict([0])[0]


# -- syncing ------------------------------------------------------------------------


def test_a_declaration_is_synced(
    reconciler: Reconciler, stages: Stages, loader: CountingLoader
) -> None:
    assert reconciler.reconcile() is None  # no stage branch yet: nothing to serve
    assert reconciler.status()["health"] == "Degraded" and not reconciler.synced
    assert reconciler.last_error == "branch gitml/production does not exist"
    done = stages.assign("adder", 1, STAGE)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Synced" and outcome.revision == done.commit
    assert served(reconciler) == {"adder": [(1, 100)]}
    assert answer(reconciler) == 1 and loader.loaded == [("adder", 1)]
    assert reconciler.synced
    status = reconciler.status()
    assert status["health"] == "Healthy" and status["sync"] == "Synced"
    assert status["desired_revision"] == status["applied_revision"] == done.commit
    assert status["last_attempted_revision"] == done.commit and status["last_error"] is None
    assert status["models"]["adder"][0]["version"] == 1
    assert status["models"]["adder"][0]["health"] == "Healthy"
    assert [h["result"] for h in status["history"]] == ["Synced"]
    # The tip did not move: nothing to do, nothing loaded.
    assert reconciler.reconcile() is None and loader.loaded == [("adder", 1)]


def test_loaded_versions_are_reused_across_revisions(
    reconciler: Reconciler, stages: Stages, loader: CountingLoader
) -> None:
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    first = reconciler.current
    stages.assign("adder", 2, STAGE, weight=10)
    reconciler.reconcile()
    assert served(reconciler) == {"adder": [(1, 90), (2, 10)]}
    assert reconciler.current is not None and first is not None
    # The same predictor object: v1 was not loaded again for the canary.
    assert (
        reconciler.current.models["adder"].pick(1).predictor
        is first.models["adder"].pick(1).predictor
    )
    stages.assign("adder", 2, STAGE)
    reconciler.reconcile()
    assert served(reconciler) == {"adder": [(2, 100)]}
    assert loader.loaded == [("adder", 1), ("adder", 2)]
    # A version no longer served is released: going back to it loads it again.
    stages.rollback(STAGE, "adder")
    reconciler.reconcile()
    assert served(reconciler) == {"adder": [(1, 90), (2, 10)]}
    stages.assign("other", 1, STAGE)
    reconciler.reconcile()
    assert served(reconciler) == {"adder": [(1, 90), (2, 10)], "other": [(1, 100)]}
    assert loader.loaded == [("adder", 1), ("adder", 2), ("adder", 1), ("other", 1)]
    assert [h["result"] for h in reconciler.status()["history"]] == ["Synced"] * 5


def test_an_invalid_declaration_keeps_the_last_good_revision(
    adder_repo: Path,
    client: gitml.Client,
    reconciler: Reconciler,
    stages: Stages,
    source: CountingSource,
    loader: CountingLoader,
) -> None:
    good = stages.assign("adder", 1, STAGE).commit
    reconciler.reconcile()
    text = "model: adder\nversions:\n- version: 2\n  weight: 90\n"
    bad = write_declaration(client.store, STAGE, "adder", text)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Failed"
    assert outcome.error == "models/adder.yaml: weights sum to 90, not 100"
    assert reconciler.current is not None and reconciler.current.commit == good
    assert answer(reconciler) == 1
    status = reconciler.status()
    assert status["health"] == "Degraded" and status["sync"] == "OutOfSync"
    assert status["last_error"] == "models/adder.yaml: weights sum to 90, not 100"
    assert status["desired_revision"] == status["last_attempted_revision"] == bad
    assert status["applied_revision"] == good
    assert [(h["revision"], h["result"]) for h in status["history"]] == [
        (bad, "Failed"),
        (good, "Synced"),
    ]
    assert reconciler.synced  # still serving the last good: a replica stays in the balancer
    # The same commit is not tried again: the branch is read, nothing else happens.
    before = (source.refreshes, source.fetches, len(loader.loaded), len(reconciler.outcomes))
    for _ in range(3):
        assert reconciler.reconcile() is None
    after = (source.refreshes, source.fetches, len(loader.loaded), len(reconciler.outcomes))
    assert after == (before[0] + 3, *before[1:])
    assert reconciler.metrics.reconciles == Counter({"Synced": 1, "Failed": 1})
    # A new commit that fixes it is picked up.
    fixed = stages.assign("adder", 2, STAGE).commit
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Synced" and outcome.revision == fixed
    status = reconciler.status()
    assert status["health"] == "Healthy" and status["last_error"] is None
    assert answer(reconciler) == 2


def test_a_reset_back_to_the_served_commit_is_synced_again(
    adder_repo: Path, client: gitml.Client, reconciler: Reconciler, stages: Stages
) -> None:
    good = stages.assign("adder", 1, STAGE).commit
    reconciler.reconcile()
    write_declaration(client.store, STAGE, "adder", "model: adder\nversions: []\n")
    assert reconciler.reconcile() is not None and reconciler.status()["health"] == "Degraded"
    git(adder_repo, "update-ref", branch(STAGE), good)  # undo the bad commit by a reset
    assert reconciler.reconcile() is None
    status = reconciler.status()
    assert (status["health"], status["sync"], status["last_error"]) == ("Healthy", "Synced", None)
    assert reconciler.synced


@pytest.mark.parametrize(
    ("declaration", "words"),
    [
        ("model: adder\nversions:\n- version: 9\n", "model 'adder' has no version 9"),
        ("model: adder\nversions:\n- version: 1\n- version: 1\n", "a version is listed twice"),
        ("model: other\nversions:\n- version: 1\n", "'other' does not match"),
        ("model: adder\nversions: [", "models/adder.yaml"),
        ("model: adder\nversions:\n- version: 1\n  weight: 101\n", "weight"),
        (  # another clone's version 1, by its digest
            f"model: adder\nversions:\n- version: 1\n  digest: sha256:{'0' * 64}\n",
            "gitml/production declares adder v1 (digest sha256:000000000000), but adder v1 here "
            "is the version registered from run",
        ),
    ],
)
def test_a_bad_declaration_is_refused_with_the_reason(
    client: gitml.Client, reconciler: Reconciler, stages: Stages, declaration: str, words: str
) -> None:
    good = stages.assign("adder", 1, STAGE).commit
    reconciler.reconcile()
    write_declaration(client.store, STAGE, "adder", declaration)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Failed"
    assert outcome.error is not None and words in outcome.error
    assert reconciler.current is not None and reconciler.current.commit == good
    assert reconciler.status()["last_error"] == outcome.error


def test_a_deleted_version_is_not_served(
    client: gitml.Client, reconciler: Reconciler, stages: Stages
) -> None:
    stages.assign("adder", 1, STAGE)
    stages.assign("adder", 2, STAGE, weight=10)
    reconciler.reconcile()
    Registry(client).delete_version("adder", 2)
    stages.assign("adder", 1, STAGE, message="touch")  # any new commit: the branch moves
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Synced"  # v2 is no longer declared
    write_declaration(
        client.store, STAGE, "adder", "model: adder\nversions:\n- version: 2\n  weight: 100\n"
    )
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.error == "model 'adder' version 2 was deleted"
    assert served(reconciler) == {"adder": [(1, 100)]}


def test_a_loader_error_is_a_failed_revision(
    client: gitml.Client, stages: Stages, source: CountingSource
) -> None:
    calls = []

    def loader(version: object, repo: Path) -> VersionNumber:
        calls.append(version)
        if len(calls) > 1:
            raise ValueError("cannot unpickle")
        return VersionNumber(1)

    reconciler = Reconciler(source, STAGE, client.config, loader=loader)
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    stages.assign("adder", 2, STAGE)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.error == "ValueError: cannot unpickle"
    assert answer(reconciler) == 1


def test_a_source_that_cannot_be_read_is_retried_not_failed(
    client: gitml.Client, reconciler: Reconciler, stages: Stages, loader: CountingLoader
) -> None:
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    tip = stages.assign("adder", 2, STAGE).commit
    fetches = [FetchError("git fetch failed: connection refused")]

    def flaky(declared: dict[str, StageDeclaration]) -> None:
        if fetches:
            raise fetches.pop()

    reconciler.source.fetch_for = flaky  # type: ignore[method-assign]
    assert reconciler.reconcile() is None
    status = reconciler.status()
    assert status["last_error"] == "git fetch failed: connection refused"
    assert status["health"] == "Healthy" and reconciler.failed is None  # the commit may be fine
    outcome = reconciler.reconcile()  # the next pass tries the same commit again
    assert outcome is not None and outcome.result == "Synced" and outcome.revision == tip
    assert reconciler.status()["last_error"] is None


# -- the real loader ------------------------------------------------------------------


def test_the_real_loader_serves_and_checks_the_input_example(
    client: gitml.Client, stages: Stages
) -> None:
    reconciler = Reconciler(CountingSource(client.store), STAGE, client.config)
    stages.assign("adder", 2, STAGE)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Synced", outcome
    assert reconciler.current is not None
    predictor = reconciler.current.models["adder"].pick().predictor
    np.testing.assert_array_equal(predictor.predict(EXAMPLE), EXAMPLE + 2)
    # v4 raises on its input example: refused, v2 keeps serving.
    stages.assign("adder", 4, STAGE)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Failed"
    assert outcome.error == (
        "model 'adder' version 4 failed its health check on its input example: "
        "RuntimeError: this model is broken on purpose"
    )
    assert reconciler.current.models["adder"].pick().version == 2


def test_a_corrupt_artifact_is_refused(
    adder_repo: Path, client: gitml.Client, stages: Stages
) -> None:
    reconciler = Reconciler(CountingSource(client.store), STAGE, client.config)
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    # Change the model file of v3's run behind the registry's back.
    version = Registry(client).get_version("adder", 3)
    ref = f"refs/gitml/runs/{version.run_id}"
    manifest = yamlio.load(git(adder_repo, "show", f"{ref}:artifacts.yaml").encode())
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["path"] != "model/MLmodel"]
    commit_file_on_ref(adder_repo, ref, "artifacts.yaml", yamlio.dump(manifest).decode())
    stages.assign("adder", 3, STAGE)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Failed"
    assert outcome.error is not None
    assert "version 3" in outcome.error and "no longer match the registered digest" in outcome.error
    assert served(reconciler) == {"adder": [(1, 100)]}


def test_load_version_verifies_before_loading(adder_repo: Path, client: gitml.Client) -> None:
    version = Registry(client).get_version("adder", 3)
    model = load_version(version, adder_repo)
    np.testing.assert_array_equal(model.predict(EXAMPLE), EXAMPLE + 3)


# -- what is declared ----------------------------------------------------------------


def test_an_empty_declaration_needs_allow_empty(
    client: gitml.Client, reconciler: Reconciler, stages: Stages, loader: CountingLoader
) -> None:
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    empty = stages.remove("adder", STAGE)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Failed"
    assert outcome.error == (
        f"gitml/production at {empty[:12]} declares no model; refusing to stop serving "
        "everything (start with --allow-empty to permit it)"
    )
    assert served(reconciler) == {"adder": [(1, 100)]}
    allowing = Reconciler(CountingSource(client.store), STAGE, client.config, allow_empty=True)
    outcome = allowing.reconcile()
    assert outcome is not None and outcome.result == "Synced"
    assert allowing.current is not None and allowing.current.models == {}
    assert allowing.synced


def test_removing_a_declaration_stops_serving_that_model(
    reconciler: Reconciler, stages: Stages
) -> None:
    stages.assign("adder", 1, STAGE)
    stages.assign("other", 1, STAGE)
    reconciler.reconcile()
    assert sorted(served(reconciler)) == ["adder", "other"]
    stages.remove("other", STAGE)
    reconciler.reconcile()
    assert served(reconciler) == {"adder": [(1, 100)]}


# -- splitting traffic ---------------------------------------------------------------


def route(*weights: int) -> ModelRoute:
    return ModelRoute(
        [
            LoadedVersion("m", n, w, f"sha256:{n}", "run", VersionNumber(n))
            for n, w in enumerate(weights, start=1)
        ]
    )


def test_a_90_10_split_is_exact_and_spread() -> None:
    r = route(90, 10)
    picks = [r.pick().version for _ in range(100)]
    assert Counter(picks) == {1: 90, 2: 10}
    canary = [i for i, v in enumerate(picks) if v == 2]
    assert all(b - a == 10 for a, b in itertools.pairwise(canary))  # never in a burst


@pytest.mark.parametrize(
    "weights", [(50, 50), (33, 67), (50, 30, 20), (1, 99), (100,), (100, 0), (70, 0, 30)]
)
def test_every_split_is_exact_over_a_cycle(weights: tuple[int, ...]) -> None:
    r = route(*weights)
    picks = Counter(r.pick().version for _ in range(200))
    assert picks == {n: 2 * w for n, w in enumerate(weights, start=1) if w}


def test_a_pin_picks_any_served_version_even_at_weight_0() -> None:
    r = route(100, 0)
    assert r.pick(2).version == 2
    with pytest.raises(NotFound, match=r"version 7 is not served \(served: 1, 2\)"):
        r.pick(7)


# -- settings and output -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2.0), ("500ms", 0.5), ("1m", 60.0), ("3", 3.0), (" 0.25S ", 0.25), ("1.5m", 90.0)],
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("soon", "use a number with s, ms or m"),
        ("", "use a number"),
        ("2h", "use a number"),
        ("10ms", "between 50ms and 1h"),
        ("-1s", "between 50ms and 1h"),
        ("2m1", "use a number"),
        ("nan", "between 50ms and 1h"),
        ("61m", "between 50ms and 1h"),
    ],
)
def test_parse_interval_refuses(text: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        parse_interval(text)


SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)\})?'
    r" (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|\+Inf|NaN))$"
)


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition; fails on any line that is not one."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            typed.add(name)
            continue
        match = SAMPLE.match(line)
        assert match is not None, f"not a sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"no TYPE for {name}"
        key = name + ("{" + match["labels"] + "}" if match["labels"] else "")
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(match["value"])
    return samples


def test_prometheus_text_is_well_formed_and_counts(
    client: gitml.Client, reconciler: Reconciler, stages: Stages
) -> None:
    stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    write_declaration(client.store, STAGE, "adder", "model: adder\nversions: []\n")
    reconciler.reconcile()
    m = reconciler.metrics
    for seconds in (0.0005, 0.003, 0.2, 7.0):
        m.observe("adder", 1, 200, seconds)
    m.observe("adder", 1, 400, 0.001)
    m.observe('we"ird', 2, 200, 0.01)
    samples = parse_metrics(reconciler.prometheus())
    labels = 'model="adder",version="1"'
    assert samples[f'gitml_requests_total{{{labels},status="200"}}'] == 4
    assert samples[f'gitml_requests_total{{{labels},status="400"}}'] == 1
    assert samples['gitml_requests_total{model="we\\"ird",version="2",status="200"}'] == 1
    assert samples[f'gitml_request_seconds_bucket{{{labels},le="0.001"}}'] == 2
    assert samples[f'gitml_request_seconds_bucket{{{labels},le="0.005"}}'] == 3
    assert samples[f'gitml_request_seconds_bucket{{{labels},le="2.5"}}'] == 4
    assert samples[f'gitml_request_seconds_bucket{{{labels},le="+Inf"}}'] == 5
    assert samples[f"gitml_request_seconds_count{{{labels}}}"] == 5
    assert samples[f"gitml_request_seconds_sum{{{labels}}}"] == pytest.approx(7.2045)
    assert samples['gitml_reconcile_total{outcome="Synced"}'] == 1
    assert samples['gitml_reconcile_total{outcome="Failed"}'] == 1
    assert samples["gitml_reconcile_seconds_total"] > 0
    current = reconciler.current
    assert current is not None and reconciler.desired is not None
    info = 'gitml_revision_info{{stage="production",revision="{}",role="{}"}}'
    assert samples[info.format(current.commit, "applied")] == 1
    assert samples[info.format(reconciler.desired, "desired")] == 1


def test_each_event_is_one_json_line(
    reconciler: Reconciler, stages: Stages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gitml.serving.reconcile")
    done = stages.assign("adder", 1, STAGE)
    reconciler.reconcile()
    events = [json.loads(r.getMessage()) for r in caplog.records]
    assert [e["event"] for e in events] == ["reconcile_started", "reconcile_synced"]
    assert events[1]["revision"] == done.commit and events[1]["served"] == {"adder": [[1, 100]]}
    assert all("\n" not in r.getMessage() for r in caplog.records)
    assert all(isinstance(e["time"], float) and isinstance(e["pid"], int) for e in events)


# -- following a remote --------------------------------------------------------------


def test_a_remote_is_followed_through_a_cache(
    adder_repo: Path, client: gitml.Client, stages: Stages, remote: Path, tmp_path: Path
) -> None:
    source = RemoteSource(str(remote), tmp_path / "cache")
    reconciler = Reconciler(source, STAGE, client.config, loader=CountingLoader())
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Synced", outcome
    assert reconciler.status()["source"] == str(remote)
    cached = set(source.store.refs("refs/"))
    # Only the branch, the declared model and its version's run came over.
    version = Registry(client).get_version("adder", 1)
    assert cached == {
        branch(STAGE),
        "refs/gitml/models/adder",
        f"refs/gitml/runs/{version.run_id}",
    }
    # A rewound remote branch (a bad push undone by a reset) is followed too.
    before = git(adder_repo, "rev-parse", branch(STAGE)).strip()
    stages.assign("adder", 2, STAGE)
    push(adder_repo, remote)
    assert reconciler.reconcile() is not None and served(reconciler) == {"adder": [(2, 100)]}
    git(remote, "update-ref", branch(STAGE), before)
    assert reconciler.reconcile() is not None and served(reconciler) == {"adder": [(1, 100)]}


def test_a_relative_path_to_the_remote_is_from_where_it_was_given(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(remote.parent)
    source = RemoteSource(remote.name, tmp_path / "cache")
    assert source.describe() == str(remote)
    source.refresh(STAGE)
    assert source.store.tip(branch(STAGE)) is not None


def test_the_real_loader_reads_the_cache(
    client: gitml.Client, stages: Stages, remote: Path, tmp_path: Path
) -> None:
    source = RemoteSource(str(remote), tmp_path / "cache")
    reconciler = Reconciler(source, STAGE, client.config)
    outcome = reconciler.reconcile()
    assert outcome is not None and outcome.result == "Synced", outcome
    assert reconciler.current is not None
    predictor = reconciler.current.models["adder"].pick().predictor
    np.testing.assert_array_equal(predictor.predict(EXAMPLE), EXAMPLE + 1)


# Installed in the reconciler's cache: git runs it on every ref transaction. After
# the first fetch into scratch refs (before the cache's branch is moved), the
# branch moves on the remote and another reconciler's fetch lands it in the cache.
RACING_HOOK = """#!/bin/sh
[ "$1" = committed ] || exit 0
grep -Eq '^[0-9a-f]+ [0-9a-f]*[1-9a-f][0-9a-f]* refs/gitml-reconcile/' || exit 0
echo fetched >> "{log}"
[ -e "{raced}" ] && exit 0
touch "{raced}"
unset $(git rev-parse --local-env-vars)
git -C "{work}" push -q "{remote}" "refs/gitml/*:refs/gitml/*" "{branch}:{branch}"
git -C "{cache}" fetch -q "{remote}" "{branch}:{branch}"
"""


def test_a_fetch_never_overwrites_a_newer_one(
    adder_repo: Path, stages: Stages, remote: Path, tmp_path: Path
) -> None:
    """A fetch that listed the remote before another fetch landed must not write its view."""
    source = RemoteSource(str(remote), tmp_path / "cache")
    source.refresh(STAGE)
    seen = stages.assign("adder", 2, STAGE).commit
    push(adder_repo, remote)
    newest = stages.assign("adder", 3, STAGE).commit  # pushed by the hook, mid-fetch
    log, hook = tmp_path / "fetches", source.store.root / "hooks" / "reference-transaction"
    hook.write_text(
        RACING_HOOK.format(
            log=log,
            raced=tmp_path / "raced",
            work=adder_repo,
            remote=remote,
            cache=source.store.root,
            branch=branch(STAGE),
        )
    )
    hook.chmod(0o755)
    source.refresh(STAGE)
    assert seen != newest and source.store.tip(branch(STAGE)) == newest
    # Our first write lost its compare-and-swap; the second fetch saw the newest tip.
    assert log.read_text().splitlines() == ["fetched", "fetched"]
    assert git(source.store.root, "for-each-ref", "refs/gitml-reconcile/") == ""


def test_a_missing_branch_on_the_remote_is_a_fetch_error(
    client: gitml.Client, tmp_path: Path
) -> None:
    bare = init_repo(tmp_path / "empty.git", bare=True)
    source = RemoteSource(str(bare), tmp_path / "cache")
    with pytest.raises(FetchError, match=r"has no refs/heads/gitml/production"):
        source.refresh(STAGE)
    reconciler = Reconciler(source, STAGE, client.config)
    assert reconciler.reconcile() is None
    assert reconciler.status()["last_error"] == f"{bare} has no refs/heads/gitml/production"


def test_scratch_refs_of_dead_processes_are_dropped(remote: Path, tmp_path: Path) -> None:
    source = RemoteSource(str(remote), tmp_path / "cache")
    source.refresh(STAGE)
    tip = source.store.tip(branch(STAGE))
    assert tip is not None
    cache = source.store.root
    git(cache, "update-ref", "refs/gitml-reconcile/999999999-abc/x", tip)  # no such process
    git(cache, "update-ref", f"refs/gitml-reconcile/{os.getpid()}-abc/x", tip)  # alive: kept
    RemoteSource(str(remote), cache)
    left = git(cache, "for-each-ref", "--format=%(refname)", "refs/gitml-reconcile/")
    assert left.split() == [f"refs/gitml-reconcile/{os.getpid()}-abc/x"]
