"""The runs page stays usable at 10,000 runs (MLflow's UI freezes there: #627, #9779, #21841).

The runs are made in bulk, as a ``git fetch`` of them would leave them: one
pack written by ``git fast-import`` (about a third of the time of writing each
object loose), a loose ref each. The page is usable when its first rows are
drawn; the page sets a performance mark then, measured from the navigation's
start.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_seed import inside, served

import gitml
from gitml.format.records import MetricValue, Run
from testing.git import git, init_repo

pytestmark = pytest.mark.slow
RUNS = 10_000
BUDGET_MS = 1000.0


def many_runs(path: Path, count: int) -> str:
    """A repository with ``count`` finished runs (5 params, 3 metrics) in one experiment."""
    init_repo(path)
    with inside(path):
        client = gitml.Client()
        experiment = client.create_experiment("sweep")
        client.close()
    commits: list[str] = []
    rng = random.Random(9)
    start = 1_764_000_000_000
    for i in range(count):
        run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        run = Run(
            id=run_id,
            experiment_id=experiment,
            name=f"run-{i}",
            status="FINISHED",
            start_time=start + i * 1000,
            end_time=start + i * 1000 + 500,
            user="sweeper",
            params={f"p{j}": str(rng.randrange(10)) for j in range(5)},
            metrics={
                f"m{j}": MetricValue(value=rng.random(), step=9, timestamp=start + i * 1000)
                for j in range(3)
            },
        )
        record = run.to_yaml()  # ASCII: its length in bytes is its length in characters
        message = f"gitml: run {i}\n"
        commits.append(
            f"commit refs/gitml/runs/{run_id}\n"
            f"committer Sweeper <sweeper@example.com> {start // 1000 + i} +0000\n"
            f"data {len(message)}\n{message}"
            f"M 100644 inline run.yaml\ndata {len(record)}\n{record.decode()}\n"
        )
    git(path, "fast-import", "--quiet", stdin="".join(commits))
    return experiment


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    repo = tmp_path_factory.mktemp("scale") / "work"
    started = time.perf_counter()
    experiment = many_runs(repo, RUNS)
    seeded = time.perf_counter() - started
    print(f"seeded {RUNS} runs in {seeded:.1f} s")
    assert seeded < 60, f"seeding {RUNS} runs took {seeded:.1f} s"
    with inside(repo):
        client = gitml.Client()
        client.index.refresh()  # built once, as `gitml index rebuild` or the first query would
        client.close()
    with served(repo) as url:
        yield {"url": url, "experiment": experiment, "shots": tmp_path_factory.mktemp("shots")}


def test_ten_thousand_runs_are_usable_within_a_second(browser: Any, big: dict[str, Any]) -> None:
    url = f"{big['url']}/ui/#/experiments/{big['experiment']}"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        warm = context.new_page()  # the server's first request pays for imports and caches
        warm.goto(url)
        warm.wait_for_selector("[data-testid=runs-grid][data-ready]", timeout=30_000)
        warm.close()

        page = context.new_page()
        timings = []
        for _ in range(3):  # the best of three: the machine running the tests may be busy
            page.goto("about:blank")
            page.goto(url)
            page.wait_for_selector("[data-testid=runs-grid][data-ready]", timeout=30_000)
            timings.append(
                page.evaluate("performance.getEntriesByName('gitml:runs-rendered')[0].startTime")
            )
            if min(timings) < BUDGET_MS:
                break
        print(f"runs page with {RUNS} runs: first rows after {min(timings):.0f} ms {timings}")
        assert min(timings) < BUDGET_MS, timings
        assert page.locator("[data-testid=run-count]").inner_text() == f"{RUNS:,} runs"
        rows = page.locator(".grid-row[data-run]")
        assert 10 <= rows.count() <= 100  # only the rows in view (and a few more) are drawn

        # Scrolling far down fetches that window of rows; the last run is reachable.
        page.locator(".grid-scroll").evaluate("(el) => { el.scrollTop = el.scrollHeight; }")
        last = page.locator(f".grid-row[data-index='{RUNS - 1}'][data-run]")
        last.wait_for(timeout=10_000)
        assert last.locator("a").inner_text() == "run-0"  # newest first: the oldest is last
        # Sorting 10,000 runs by a metric, server-side, is one more request.
        page.locator(".grid-head [role=columnheader]", has_text="m0").get_by_role("button").click()
        page.wait_for_selector(".grid-head [aria-sort=descending]")
        first = page.locator(".grid-row[data-index='0'][data-run]")
        first.wait_for()
        shot = big["shots"] / "runs-10k.png"
        page.screenshot(path=str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")
    finally:
        context.close()
