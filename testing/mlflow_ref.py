"""MLflow itself, as the reference answer: a script run with MLflow in a child process.

MLflow is imported only in the child, so the test process keeps its warnings
filter and its import time; the child logs to a ``file:`` store in the test's
folder and prints its answer as JSON on its last line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .procs import child_env, run

ROOT = Path(__file__).resolve().parent.parent


def mlflow_answer(script: str, work: Path, *args: str, timeout: float = 240) -> Any:
    """Run ``script`` with MLflow (tracking URI: ``work/mlruns``); its last stdout line, as JSON."""
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = child_env(
        home,
        MLFLOW_TRACKING_URI=(work / "mlruns").as_uri(),
        # MLflow 3.17 keeps the file store in "maintenance mode" behind this switch; its
        # sqlite store needs SQLAlchemy, which mlflow-skinny leaves out.
        MLFLOW_ALLOW_FILE_STORE="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    done = run(script, work, *args, env=env, timeout=timeout)
    assert done.returncode == 0, f"MLflow child failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])
