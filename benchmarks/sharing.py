"""Sharing benchmarks: ``gitml push`` and ``gitml pull`` beside plain git moving the same refs.

    python benchmarks/sharing.py [--runs 1000,10000]

For each count and each ``--shapes``: a repository of that many runs (the
issue's sweep: one param and one metric each; wide: 10 params, 5 metrics,
3 tags), made in bulk as ``benchmarks/search.py`` makes them, a bare remote on
the same disk, then: the first ``gitml push`` beside ``git push`` of
``refs/gitml/*`` to another bare remote; the first ``gitml pull`` into a
fresh clone beside ``git fetch`` of the same refspec; a pull with nothing new
beside a no-op ``git fetch``, and a push with nothing new beside the same
(git's no-op ``git push`` printed too); and the first ``gitml runs list``
after the pull. Targets: push and pull at most 1.5x plain git, a push or
pull with nothing new at most 1.2x git's no-op fetch.
Each figure is the median of ``--repeat`` runs, gitml and git in turn.

Then storage: bytes per run (objects, packed refs, reflogs,
the query index, the rest of ``.git/gitml``) for ``--storage-runs`` runs
of two shapes (one param; 10 params, 5 metrics x 100 steps, 3 tags), made
through the client (``create_run`` ... ``set_terminated``) and again as a
training script makes them (``start_run`` ... ``end_run``), beside MLflow's
SQLite store for the same runs made the same way. Each side is measured after
its housekeeping: ``git gc`` and ``gitml index compact``; ``VACUUM`` for
MLflow's store (which needs SQLAlchemy and Alembic importable by
``--mlflow-python``). Target: at most 1.5x MLflow's bytes per run in all.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, child_env, mlflow_figures, parser, work_folder
from benchmarks.search import generate
from testing.git import init_repo

REFSPEC = "refs/gitml/*:refs/gitml/*"


def timed(command: Sequence[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=child_env())
    return time.perf_counter() - start


def bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def row(name: str, pairs: list[tuple[float, float]], target: float) -> None:
    """The medians of ``pairs`` (gitml's time, git's), their ratio against ``target``,
    and, from two measurements, the range of each: git's own time for 10,000 new
    refs swung 0.5-2.3 s here between runs, most of it system time."""
    gitml, git = medians(pairs)
    ratio = gitml / git
    verdict = "met" if ratio <= target else "NOT met"
    spread = ""
    if len(pairs) > 1:
        mine, theirs = [p[0] for p in pairs], [p[1] for p in pairs]
        spread = (
            f"   range: gitml {min(mine):.2f}-{max(mine):.2f} s, "
            f"git {min(theirs):.2f}-{max(theirs):.2f} s"
        )
    print(
        f"{name:<40} gitml {gitml:8.2f} s   git {git:8.2f} s   {ratio:5.2f}x "
        f"(target <= {target}x: {verdict}){spread}",
        flush=True,
    )


# What each repository's runs hold: (params, metrics, tags). The sweep
# is one param and one metric a run; the wide shape is benchmarks/search.py's.
RUN_SHAPES = {"sweep": (1, 1, 0), "wide": (10, 5, 3)}


def fresh_clone(remote: Path, clone: Path) -> Path:
    """A clone as one over the network is: ``--no-local``, or git would link every object of
    the remote into it, and the pull would find the runs' objects already there."""
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(
        ["git", "clone", "-q", "--no-local", str(remote), str(clone)],
        check=True,
        capture_output=True,
    )
    return clone


def bench(count: int, shape: str, base: Path, repeat: int) -> None:
    """Each figure is the median of ``repeat`` measurements, gitml's and git's taken
    in turn: on a shared disk git's own fetch of 10,000 refs varied 1.4-4.5 s."""
    gitml = shutil.which("gitml", path=str(Path(sys.executable).parent)) or "gitml"
    params, metrics, tags = RUN_SHAPES[shape]
    label = f"{count:,} runs ({shape})"
    work = generate(
        base / f"runs-{shape}-{count}", count, params=params, metrics=metrics, tags=tags
    )
    origin = base / f"gitml-{shape}-{count}.git"
    subprocess.run(["git", "remote", "add", "origin", str(origin)], cwd=work, check=True)
    pushes: list[tuple[float, float]] = []
    for _ in range(repeat):
        for remote in (origin, base / f"git-{shape}-{count}.git"):
            shutil.rmtree(remote, ignore_errors=True)
            bare(remote)
        pushed = timed([gitml, "push", "origin"], work)
        plain = timed(["git", "push", "-q", str(base / f"git-{shape}-{count}.git"), REFSPEC], work)
        pushes.append((pushed, plain))
    row(f"{label}: first push", pushes, 1.5)
    # The yardstick for a push with nothing new is git's no-op fetch;
    # git's own no-op push (which also lists both sides) is printed beside it.
    noop_pushes, git_noop_pushes = [], []
    for _ in range(repeat):
        pushed = timed([gitml, "push", "origin"], work)
        fetched = timed(["git", "fetch", "-q", str(origin), REFSPEC], work)
        noop_pushes.append((pushed, fetched))
        git_noop_pushes.append(
            timed(["git", "push", "-q", str(base / f"git-{shape}-{count}.git"), REFSPEC], work)
        )
    row(f"{label}: push with nothing new", noop_pushes, 1.2)
    print(f"{label}: (git's own no-op push {statistics.median(git_noop_pushes):8.2f} s)")

    pulls: list[tuple[float, float]] = []
    clones = [base / f"clone-gitml-{shape}-{count}", base / f"clone-git-{shape}-{count}"]
    for _ in range(repeat):
        fresh_clone(origin, clones[0])
        fresh_clone(origin, clones[1])
        subprocess.run(
            [gitml, "remote", "setup", "origin"],
            cwd=clones[0],
            check=True,
            capture_output=True,
            env=child_env(),
        )
        pulled = timed([gitml, "pull", "origin"], clones[0])
        fetched = timed(["git", "fetch", "-q", "origin", REFSPEC], clones[1])
        pulls.append((pulled, fetched))
    row(f"{label}: first pull (fresh clone)", pulls, 1.5)
    listed = timed([gitml, "runs", "list", "--max", "20"], clones[0])
    print(f"{label}: first 'gitml runs list' after the pull {listed:8.2f} s (target <= 2 s)")
    noops = [
        (
            timed([gitml, "pull", "origin"], clones[0]),
            timed(["git", "fetch", "-q", "origin", REFSPEC], clones[1]),
        )
        for _ in range(repeat)
    ]
    row(f"{label}: pull with nothing new", noops, 1.2)


def medians(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


SHAPES = {
    "one param": (1, 0, 0, 0),  # params, metrics, steps per metric, tags
    "10 params, 5 metrics x 100 steps, 3 tags": (10, 5, 100, 3),
}


def log_runs(
    client: object, count: int, shape: tuple[int, int, int, int], metric: type, fluent: object
) -> None:
    """``count`` runs of ``shape`` through ``client`` (gitml's or MLflow's: same calls),
    or, when ``fluent`` is the library (``gitml``, ``mlflow``), through its fluent
    API, as a training script logs: ``with start_run():`` around ``log_param``,
    ``set_tag`` and one ``log_metrics`` a step.

    Through the client the points go in one ``log_batch`` (``metric``: its Metric
    class): MLflow's store commits each ``log_metric`` to SQLite on its own, which
    took minutes for a few thousand points on a loaded machine; the rows it
    keeps are the same.
    """
    params, metrics, steps, tags = shape
    rng = random.Random(0)  # noisy values, as training's are: a regular series packs smaller
    for i in range(count):
        if fluent is not None:
            with fluent.start_run(experiment_id="0", run_name=f"run-{i}"):  # type: ignore[attr-defined]
                for j in range(params):
                    fluent.log_param(f"p{j}", f"value-{i % 7}-{j}")  # type: ignore[attr-defined]
                for j in range(tags):
                    fluent.set_tag(f"t{j}", f"tag {i % 5}")  # type: ignore[attr-defined]
                for step in range(steps):
                    values = {f"m{j}": rng.random() for j in range(metrics)}
                    fluent.log_metrics(values, step=step)  # type: ignore[attr-defined]
            continue
        run_id = client.create_run("0", run_name=f"run-{i}").info.run_id  # type: ignore[attr-defined]
        for j in range(params):
            client.log_param(run_id, f"p{j}", f"value-{i % 7}-{j}")  # type: ignore[attr-defined]
        for j in range(tags):
            client.set_tag(run_id, f"t{j}", f"tag {i % 5}")  # type: ignore[attr-defined]
        points = [
            metric(f"m{j}", rng.random(), 1_764_000_000_000 + step, step)
            for j in range(metrics)
            for step in range(steps)
        ]
        if points:
            client.log_batch(run_id, metrics=points)  # type: ignore[attr-defined]
        client.set_terminated(run_id)  # type: ignore[attr-defined]


def size(path: Path) -> int:
    """Bytes of the files under ``path`` (apparent sizes)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def git_parts(repo: Path) -> dict[str, int]:
    dot = repo / ".git"
    data = dot / "gitml"
    index = sum(size(p) for p in data.glob("index.sqlite*"))
    return {
        "objects": size(dot / "objects"),
        "refs": size(dot / "refs") + size(dot / "packed-refs"),
        "reflogs": size(dot / "logs" / "refs" / "gitml"),
        "index": index,
        "other gitml": size(data) - index if data.exists() else 0,
    }


def gitml_bytes(
    base: Path, count: int, shape: tuple[int, int, int, int], api: str
) -> dict[str, float]:
    """Bytes per run of ``count`` runs made through ``api`` (``API``), over a repository
    with none, each measured ``housekept``."""
    import gitml
    from gitml.tracking import fluent

    # A project with one commit, where the script runs: each run's code is that commit.
    repo = init_repo(base / f"storage-{api}-{'-'.join(map(str, shape))}")
    os.chdir(repo)
    client = gitml.Client(str(repo))
    client.search_runs()  # the Default experiment and an empty index
    client.close()
    empty = housekept(repo)
    fluent.set_tracking_uri(str(repo))
    client = fluent.get_client() if api == "start_run" else gitml.Client(str(repo))
    log_runs(client, count, shape, gitml.Metric, gitml if api == "start_run" else None)
    assert len(client.search_runs(max_results=count)) == count  # the index is filled
    client.close()
    fluent.set_tracking_uri(None)
    full = housekept(repo)
    return {name: (full[name] - empty[name]) / count for name in full}


def housekept(repo: Path) -> dict[str, int]:
    """``git_parts`` after ``git gc`` and ``gitml index compact``, as MLflow's store is
    measured after ``VACUUM``."""
    import gitml

    subprocess.run(["git", "gc", "-q"], cwd=repo, check=True)
    client = gitml.Client(str(repo))
    client.index.compact()
    client.close()
    return git_parts(repo)


# How the runs are made: MlflowClient-style calls (create_run ... set_terminated),
# or a training script's start_run ... end_run around the same logging calls.
API = ("Client", "start_run")

MLFLOW_STORE = """
import json, os, sqlite3, sys
sys.path.insert(0, sys.argv[4])
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from benchmarks.sharing import log_runs
db, count, shape = sys.argv[1], int(sys.argv[2]), tuple(json.loads(sys.argv[3]))

def vacuumed() -> int:
    conn = sqlite3.connect(db)
    conn.execute("VACUUM")
    conn.close()
    return os.path.getsize(db)

mlflow.set_tracking_uri(f"sqlite:///{db}")
client = MlflowClient(tracking_uri=f"sqlite:///{db}")
client.search_experiments()
empty = vacuumed()
log_runs(client, count, shape, Metric, mlflow if sys.argv[5] == "start_run" else None)
print(json.dumps({"bytes": (vacuumed() - empty) / count}))
"""


def storage(base: Path, counts: list[int], mlflow_python: str) -> None:
    for ((label, shape), count), api in itertools.product(
        zip(SHAPES.items(), counts, strict=True), API
    ):
        if count == 0:
            continue  # "--storage-runs 2000,0": none of this shape
        parts = gitml_bytes(base, count, shape, api)
        total = sum(parts.values())
        db = base / f"mlflow-{api}-{'-'.join(map(str, shape))}.db"
        theirs = mlflow_figures(
            mlflow_python, MLFLOW_STORE, str(db), str(count), json.dumps(shape), str(ROOT), api
        )
        detail = ", ".join(f"{name} {value:,.0f}" for name, value in parts.items())
        print(
            f"storage, {label}, {count:,} runs by {api}: gitml {total:,.0f} B/run ({detail})",
            flush=True,
        )
        if theirs is None:
            print("  MLflow: not importable by --mlflow-python (with SQLAlchemy, Alembic)")
            continue
        ratio = total / theirs["bytes"]
        verdict = "met" if ratio <= 1.5 else "NOT met"
        print(
            f"  MLflow SQLite {theirs['bytes']:,.0f} B/run: {ratio:.2f}x "
            f"(target <= 1.5x: {verdict})",
            flush=True,
        )


def main() -> None:
    parse = parser(__doc__)
    parse.add_argument("--runs", default="1000,10000", help="comma-separated run counts")
    parse.add_argument(
        "--storage-runs",
        default="2000,200",
        help="runs of each storage shape, comma-separated in order, or one count for all "
        "(0: none); MLflow's start_run commits each step's metrics on its own, so 2,000 "
        "wide runs would take an hour",
    )
    parse.add_argument(
        "--shapes", default="sweep,wide", help=f"run shapes, of {', '.join(RUN_SHAPES)}"
    )
    parse.add_argument("--repeat", type=int, default=3, help="measurements of each figure")
    parse.add_argument("--keep", action="store_true", help="keep the repositories, to profile")
    args = parse.parse_args()
    base = work_folder(args, "sharing-")
    for count in (int(n) for n in args.runs.split(",") if n):
        for shape in args.shapes.split(","):
            bench(count, shape, base, args.repeat)
    counts = [int(n) for n in args.storage_runs.split(",")]
    if len(counts) == 1:
        counts *= len(SHAPES)
    if len(counts) != len(SHAPES):
        parse.error(f"--storage-runs: one count, or one for each of {len(SHAPES)} shapes")
    if any(counts):
        storage(base, counts, args.mlflow_python)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
