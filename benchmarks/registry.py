"""Registry benchmarks: registering versions and changing stages, beside MLflow and GTO.

    python benchmarks/registry.py [--versions 1000] [--mlflow-python PY] [--quick]

The targets: register a version in at most 5 ms in process and 300 ms
as a whole ``gitml models register`` process, flat from version 1 to 1,000; a
stage assignment likewise; ``gitml stage show`` at most 200 ms as a process
with 1,000 versions and 1,000 stage changes in history. Prints the median of
the first and of the last 100 in-process calls (flat means they agree), and
each command as a process early (a few versions) and late (after the 1,000);
``stage show`` also cold, with the cache of validated records deleted first.
MLflow's figures are measured when ``--mlflow-python`` can import MLflow (on
SQLite, ``create_model_version``, ``transition_model_version_stage`` and
``set_registered_model_alias``, over ``--mlflow-versions``); GTO's are
figures from the reference machines, not measured here.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, mlflow_figures, parser, settle, work_folder
from testing.git import init_repo

MODEL = "churn"
STAGE = "production"
# GTO 1.x on the reference machines, not measured here.
GTO_REGISTER_S = 0.6
GTO_ASSIGN_S = 0.9
GTO_PER_TAG_MS = 2.8


def row(
    name: str, value: float | None, target: float | None, mlflow: str = "-", gto: str = "-"
) -> None:
    """One line: gitml's figure (ms), its target and whether it is met, MLflow, GTO."""
    aim = "-" if target is None else f"<= {target:g}"
    verdict = "" if target is None or value is None else ("ok" if value <= target else "MISSED")
    shown = "-" if value is None else f"{value:.2f}"
    print(
        f"{name:<46} {shown:>9}   target {aim:<8} {verdict:<6}  mlflow {mlflow:<8}  gto {gto}",
        flush=True,
    )


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1e3


def setup(base: Path) -> tuple[Path, str, Any, Any]:
    """A repository with one run holding a real sklearn model: (path, run id, registry, stages)."""
    import gitml.sklearn
    from gitml.registry.stages import Stages
    from gitml.registry.versions import Registry
    from gitml.tracking import fluent
    from gitml.tracking.client import Client
    from testing.models import iris_classifier

    path = init_repo(base / "registry")
    os.chdir(path)
    fluent.set_tracking_uri(None)
    client = Client()
    run_id = client.create_run(run_name="iris").id
    client.log_metric(run_id, "acc", 0.9)
    clf, features = iris_classifier()
    gitml.sklearn.log_model(clf, "model", input_example=features.head(2), run_id=run_id)
    client.set_terminated(run_id)
    registry = Registry(client)
    return path, run_id, registry, Stages(registry, client.config)


def timed(func: Callable[[], object], count: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each call (CPU tells our cost from a busy machine's)."""
    wall, cpu = [], []
    for _ in range(count):
        start, start_cpu = time.perf_counter(), time.process_time()
        func()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


class Commands:
    """The gitml commands as processes: the CLI when it has them, else the same library
    calls in ``python -c`` (said in the output)."""

    def __init__(self, run_id: str) -> None:
        # As installed code runs: bytecode cached (some sandboxes disable that).
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        exe = Path(sys.executable).parent / "gitml"
        self.gitml = str(exe) if exe.exists() else (shutil.which("gitml") or "gitml")
        self.run_id = run_id
        probe = [self.gitml, "models", "register", "--help"]
        self.cli = subprocess.run(probe, capture_output=True, env=self.env).returncode == 0
        probe = [self.gitml, "stage", "assign", "--help"]
        self.cli = (
            self.cli and subprocess.run(probe, capture_output=True, env=self.env).returncode == 0
        )

    def register(self) -> list[str]:
        uri = f"runs:/{self.run_id}/model"
        if self.cli:
            return [self.gitml, "models", "register", uri, MODEL]
        return self._script(
            "from gitml.registry.versions import Registry; "
            "from gitml.tracking.client import Client; "
            f"Registry(Client()).register({uri!r}, {MODEL!r})"
        )

    def assign(self, version: int) -> list[str]:
        if self.cli:
            return [self.gitml, "stage", "assign", MODEL, str(version), STAGE]
        return self._script(
            "from gitml.registry.versions import Registry; "
            "from gitml.registry.stages import Stages; "
            "from gitml.tracking.client import Client; c = Client(); "
            f"Stages(Registry(c), c.config).assign({MODEL!r}, {version}, {STAGE!r})"
        )

    def show(self) -> list[str]:
        return [self.gitml, "stage", "show", STAGE]

    def _script(self, code: str) -> list[str]:
        return [sys.executable, "-c", code]

    def wall(
        self, commands: Sequence[list[str]], prepare: Callable[[], object] | None = None
    ) -> tuple[list[float], list[float]]:
        """Wall and CPU (user + system) seconds of each process, run one after another
        (``prepare`` runs ahead of each, untimed)."""
        wall, cpu = [], []
        for command in commands:
            if prepare is not None:
                prepare()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=self.env)
            wall.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
        return wall, cpu


class Counter:
    """The next version to declare: every assignment must change the declaration."""

    def __init__(self) -> None:
        self.count = 0

    def next(self, highest: int) -> int:
        self.count += 1
        return (self.count - 1) % highest + 1


_MLFLOW_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, statistics, sys, time, warnings
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import mlflow
    from mlflow import MlflowClient
    os.chdir(sys.argv[1])
    count = int(sys.argv[2])
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_text("flavors: {}", "model/MLmodel")
    run_id = run.info.run_id
    client.create_registered_model("churn")
    register, transition, alias = [], [], []
    for i in range(count):
        start = time.perf_counter()
        client.create_model_version("churn", f"runs:/{run_id}/model", run_id=run_id)
        register.append(time.perf_counter() - start)
    for i in range(count):
        start = time.perf_counter()
        client.transition_model_version_stage("churn", str(i + 1), "Production")
        transition.append(time.perf_counter() - start)
        start = time.perf_counter()
        client.set_registered_model_alias("churn", "production", str(i + 1))
        alias.append(time.perf_counter() - start)
    k = min(100, count)
    ms = lambda xs: statistics.median(xs) * 1e3
    print(json.dumps({
        "register_first_ms": ms(register[:k]), "register_last_ms": ms(register[-k:]),
        "transition_first_ms": ms(transition[:k]), "transition_last_ms": ms(transition[-k:]),
        "alias_first_ms": ms(alias[:k]), "alias_last_ms": ms(alias[-k:]),
    }))
    """
)


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--versions", type=int, default=1000)
    parse.add_argument("--processes", type=int, default=6, help="timed starts per command")
    parse.add_argument(
        "--mlflow-versions",
        type=int,
        default=100,
        help="MLflow registers and transitions fewer versions (20 to 50 ms each here)",
    )
    parse.add_argument("--no-mlflow", action="store_true", help="skip MLflow's figures")
    parse.add_argument(
        "--quick",
        action="store_true",
        help="a small run: at most 60 versions, 3 starts per command (smaller ones given stay)",
    )
    args = parse.parse_args()
    if args.quick:
        args.versions = min(args.versions, 60)
        args.processes = min(args.processes, 3)
        args.mlflow_versions = min(args.mlflow_versions, 20)
    window = min(100, args.versions // 4)
    base = work_folder(args, "registry-")
    try:
        mlflow = None
        if not args.no_mlflow:
            work = base / "mlflow"
            work.mkdir()
            mlflow = mlflow_figures(
                args.mlflow_python, _MLFLOW_SCRIPT, str(work), str(args.mlflow_versions)
            )
            settle()

        def ml(key: str) -> str:
            return f"{mlflow[key]:.1f}" if mlflow else "n/a"

        path, run_id, registry, stages = setup(base)
        uri = f"runs:/{run_id}/model"
        commands = Commands(run_id)
        how = "gitml CLI" if commands.cli else "python -c over the library (no CLI command yet)"
        print(f"processes: {how}", flush=True)
        runs = args.processes
        # Early process figures, from version 1: one warm-up start (bytecode, disk cache).
        commands.wall([commands.register()])
        early_register = commands.wall([commands.register() for _ in range(runs)])
        counter = Counter()
        highest = runs + 1
        commands.wall([commands.assign(counter.next(highest))])
        early_assign = commands.wall([commands.assign(counter.next(highest)) for _ in range(runs)])
        commands.wall([commands.show()])
        early_show = commands.wall([commands.show() for _ in range(runs)])

        registry.client.flush()
        todo = args.versions - highest
        reg_times, reg_cpu = timed(lambda: registry.register(uri, MODEL), todo)
        changes = args.versions - (runs + 1)
        assign_times, assign_cpu = timed(
            lambda: stages.assign(MODEL, counter.next(args.versions), STAGE), changes
        )
        versions = len(registry.versions(MODEL))
        history = sum(1 for _ in stages.history(STAGE))

        late_register = commands.wall([commands.register() for _ in range(runs)])
        late_assign = commands.wall(
            [commands.assign(counter.next(args.versions)) for _ in range(runs)]
        )
        late_show = commands.wall([commands.show() for _ in range(runs)])
        # Cold: records never validated here (a fresh clone, or just fetched) load pydantic.
        cache = path / ".git" / "gitml" / "validated.sqlite"
        cold_show = commands.wall(
            [commands.show() for _ in range(runs)], prepare=lambda: cache.unlink(missing_ok=True)
        )

        baseline = commands.wall([[sys.executable, "-c", "pass"] for _ in range(runs)])
        version_start = commands.wall([[commands.gitml, "--version"] for _ in range(runs)])

        print(f"{versions} versions of '{MODEL}', {history} changes on '{STAGE}'")
        first, last = slice(None, window), slice(-window, None)
        gto = GTO_PER_TAG_MS * args.versions
        in_process = [
            ("register a version, in process", reg_times, reg_cpu, "register"),
            ("assign a stage, in process", assign_times, assign_cpu, "transition"),
        ]
        for what, wall, cpu, key in in_process:
            row(f"{what}, first {window} (ms)", median_ms(wall[first]), 5, ml(f"{key}_first_ms"))
            row(f"  the same, last {window} (ms)", median_ms(wall[last]), 5, ml(f"{key}_last_ms"))
            row(f"  its CPU time, first {window} (ms)", median_ms(cpu[first]), None)
            row(f"  its CPU time, last {window} (ms)", median_ms(cpu[last]), None)
        row("MLflow's alias instead of a stage, last (ms)", None, None, ml("alias_last_ms"))
        processes = [
            ("gitml models register", early_register, late_register, 300, GTO_REGISTER_S),
            ("gitml stage assign", early_assign, late_assign, 300, GTO_ASSIGN_S),
            ("gitml stage show", early_show, late_show, 200, None),
        ]
        for what, early, late, aim, reference in processes:
            ref_early = "-" if reference is None else f"{reference * 1e3:.0f} (ref)"
            ref_late = "-" if reference is None else f"{reference * 1e3 + gto:.0f} (ref)"
            row(f"{what}, process, early (ms)", median_ms(early[0]), aim, "-", ref_early)
            row(
                f"  the same, {versions} versions/{history} changes (ms)",
                median_ms(late[0]),
                aim,
                "-",
                ref_late,
            )
            row("  its CPU time, early (ms)", median_ms(early[1]), None)
            row("  its CPU time, late (ms)", median_ms(late[1]), None)
        row(
            f"gitml stage show, nothing validated before, {versions}/{history} (ms)",
            median_ms(cold_show[0]),
            None,
        )
        row("  its CPU time (ms)", median_ms(cold_show[1]), None)
        row("python -c pass, process (ms, this machine now)", median_ms(baseline[0]), None)
        row("  its CPU time (ms)", median_ms(baseline[1]), None)
        row("gitml --version, process (ms)", median_ms(version_start[0]), None)
        row("  its CPU time (ms)", median_ms(version_start[1]), None)
        if mlflow:
            print(
                f"MLflow 3.17 on SQLite, one process, {args.mlflow_versions} versions "
                f"(median of the first and last {min(100, args.mlflow_versions)})"
            )
        print(f"GTO: reference machines' figures, plus {GTO_PER_TAG_MS} ms per tag; not measured")
    finally:
        os.chdir(ROOT)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
