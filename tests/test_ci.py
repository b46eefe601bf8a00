""".ci/run: the README's first two commands, and a failure of either fails CI; the
third, for development, leaves out the slow tests.

The script runs with stand-ins for python, ruff, mypy and apt-get that record
their calls and exit as told, so what is checked is the script's own logic.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# `python -m venv DIR` makes DIR/bin/activate (putting DIR/bin first on PATH)
# and DIR/bin/python, this same stand-in.
FAKE_PYTHON = """\
#!/usr/bin/env bash
echo "$0 $* PYTHONPATH=${PYTHONPATH-unset}" >> "$CALLS"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
  echo "PATH=$3/bin:\\$PATH" > "$3/bin/activate"
  exit "${VENV_EXIT:-0}"
fi
[ "$1 $2" = "-m pytest" ] && exit "${PYTEST_EXIT:-0}"
exit 0
"""


def readme_commands() -> list[str]:
    """The commands of the README's first bash block (its comment lines left out)."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    return [ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#")]


@pytest.fixture
def ci(tmp_path: Path) -> Path:
    """A copy of .ci/run beside a stand-in examples/demo.sh, and the stand-in tools."""
    work = tmp_path / "checkout"
    (work / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", work / ".ci" / "run")
    (work / "examples").mkdir()
    (work / "examples" / "demo.sh").write_text(
        'echo "demo $(command -v python) PYTHONPATH=${PYTHONPATH-unset}" >> "$CALLS"\n'
        'exit "${DEMO_EXIT:-0}"\n'
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tools = {"python": FAKE_PYTHON}
    for name in ("ruff", "mypy", "apt-get"):
        variable = name.upper().replace("-", "_") + "_EXIT"
        tools[name] = (
            f'#!/usr/bin/env bash\necho "{name} $*" >> "$CALLS"\nexit "${{{variable}:-0}}"\n'
        )
    # The system tools .ci/run installs when `command -v` misses them, present here
    # so that what runs does not depend on what this machine happens to have.
    for name in ("git", "chromium", "nginx", "npm", "azurite-blob"):
        tools[name] = "#!/usr/bin/env bash\nexit 0\n"
    for name, script in tools.items():
        (bindir / name).write_text(script)
        (bindir / name).chmod(0o755)
    return work


def run_ci(work: Path, **exits: str) -> tuple[int, list[str]]:
    calls = work.parent / "calls"
    calls.write_text("")
    env = {
        **os.environ,
        "PATH": f"{work.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "PYTHONPATH": "/somewhere",
        **exits,
    }
    done = subprocess.run(
        ["bash", str(work / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, calls.read_text().splitlines()


def test_ci_runs_both_readme_commands_verbatim() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    first, tests, _ = readme_commands()
    assert first == "python -m pip install -e '.[sklearn]' && bash examples/demo.sh"
    assert tests.startswith("python -m pip install -e '.[dev]' && ")
    lines = [ln.strip().strip("()") for ln in script.splitlines()]
    assert first in lines and tests in lines


def test_the_development_command_leaves_out_the_slow_tests(pytestconfig: pytest.Config) -> None:
    *_, fast = readme_commands()
    assert fast == "python -m pytest -m 'not slow'"
    assert pytestconfig.option.strict_markers  # a misspelt marker is an error, not a no-op
    assert any(m.startswith("slow:") for m in pytestconfig.getini("markers"))


def test_the_first_command_runs_in_a_fresh_venv_after_the_tests(ci: Path) -> None:
    code, calls = run_ci(ci)
    assert code == 0, calls
    system = str(ci.parent / "bin" / "python")
    tests = calls.index(f"{system} -m pytest PYTHONPATH=/somewhere")
    venv = next(i for i, c in enumerate(calls) if c.startswith(f"{system} -m venv "))
    venv_python = calls[venv].split()[3] + "/bin/python"
    assert tests < venv
    # Only what the first command installs: the venv's own python, without PYTHONPATH.
    assert calls[venv + 1 :] == [
        f"{venv_python} -m pip install -e .[sklearn] PYTHONPATH=unset",
        f"demo {venv_python} PYTHONPATH=unset",
    ]
    assert not any(c.startswith("apt-get") for c in calls)


@pytest.mark.parametrize(
    ("exits", "expected"),
    [
        ({"RUFF_EXIT": "1"}, 1),
        ({"MYPY_EXIT": "2"}, 2),
        ({"PYTEST_EXIT": "5"}, 5),  # pytest ran no test: CI must not pass
        ({"DEMO_EXIT": "3"}, 3),
    ],
)
def test_a_failing_step_fails_ci_with_its_status(
    ci: Path, exits: dict[str, str], expected: int
) -> None:
    code, calls = run_ci(ci, **exits)
    assert code == expected, calls
    if "DEMO_EXIT" not in exits:
        assert not any(c.startswith("demo") for c in calls)


def test_a_python_without_venv_gets_python3_venv(ci: Path) -> None:
    code, calls = run_ci(ci, VENV_EXIT="1")
    assert code == 1  # the stand-in's venv fails again after the install
    assert calls[-2:] == ["apt-get install -y -q python3-venv", calls[-1]]
    assert " -m venv " in calls[-1]
