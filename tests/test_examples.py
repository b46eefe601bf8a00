"""The runnable examples, end to end, as a user would run them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testing.procs import child_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_script(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    env = child_env(TMPDIR=str(tmp_path))
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== gitml runs list" in out
    assert '"classes": [' in out  # the artifact, fetched digest-checked
    # The run's git log walks from the run's commits into the code commit.
    log = out.split("the run is a Git ref whose history reaches the code commit", 1)[1]
    lines = log.strip().splitlines()
    assert any(line.split(" ", 1)[1] == "Add training script" for line in lines[:-1])
    assert lines[0].split(" ", 1)[1].startswith("gitml: ")
    project = Path(lines[-1].removeprefix("Demo project left in "))
    assert project.is_relative_to(tmp_path)
    fsck = subprocess.run(
        ["git", "fsck", "--full"], cwd=project, env=env, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr
