"""Sharing benchmarks: ``gitml push`` and ``gitml pull`` beside plain git moving the same refs.

    python benchmarks/sharing.py [--runs 1000,10000]

For each count: a repository of that many runs (10 params, 5 metrics, 3 tags
each, made in bulk as ``benchmarks/search.py`` makes them), a bare remote on
the same disk, then: the first ``gitml push`` beside ``git push`` of
``refs/gitml/*`` to another bare remote; the first ``gitml pull`` into a
fresh clone beside ``git fetch`` of the same refspec; a pull with nothing new
beside a no-op ``git fetch``; and the first ``gitml runs list`` after the pull.
Targets: push and pull at most 1.5x plain git, a no-op pull at most 1.2x.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import child_env, parser, work_folder
from benchmarks.search import generate

REFSPEC = "refs/gitml/*:refs/gitml/*"


def timed(command: Sequence[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=child_env())
    return time.perf_counter() - start


def bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def row(name: str, gitml: float, git: float, target: float) -> None:
    ratio = gitml / git
    verdict = "met" if ratio <= target else "NOT met"
    print(
        f"{name:<40} gitml {gitml:8.2f} s   git {git:8.2f} s   {ratio:5.2f}x "
        f"(target <= {target}x: {verdict})",
        flush=True,
    )


def bench(count: int, base: Path) -> None:
    gitml = shutil.which("gitml", path=str(Path(sys.executable).parent)) or "gitml"
    work = generate(base / f"runs-{count}", count)
    for remote in ("gitml.git", "git.git"):
        bare(base / f"{remote}-{count}")
    subprocess.run(["git", "remote", "add", "origin", str(base / f"gitml.git-{count}")],
                   cwd=work, check=True)
    pushed = timed([gitml, "push", "origin"], work)
    plain = timed(["git", "push", "-q", str(base / f"git.git-{count}"), REFSPEC], work)
    row(f"{count:,} runs: first push", pushed, plain, 1.5)

    clones = []
    for name in ("gitml", "git"):
        clone = base / f"clone-{name}-{count}"
        subprocess.run(["git", "clone", "-q", str(base / f"gitml.git-{count}"), str(clone)],
                       check=True, capture_output=True)
        clones.append(clone)
    subprocess.run([gitml, "remote", "setup", "origin"], cwd=clones[0], check=True,
                   capture_output=True, env=child_env())
    pulled = timed([gitml, "pull", "origin"], clones[0])
    fetched = timed(["git", "fetch", "-q", "origin", REFSPEC], clones[1])
    row(f"{count:,} runs: first pull (fresh clone)", pulled, fetched, 1.5)
    listed = timed([gitml, "runs", "list", "--max", "20"], clones[0])
    print(f"{count:,} runs: first 'gitml runs list' after the pull {listed:8.2f} s "
          "(target <= 2 s)", flush=True)
    noop = timed([gitml, "pull", "origin"], clones[0])
    noop_git = timed(["git", "fetch", "-q", "origin", REFSPEC], clones[1])
    row(f"{count:,} runs: pull with nothing new", noop, noop_git, 1.2)


def main() -> None:
    parse = parser(__doc__)
    parse.add_argument("--runs", default="1000,10000", help="comma-separated run counts")
    args = parse.parse_args()
    base = work_folder(args, "sharing-")
    for count in (int(n) for n in args.runs.split(",")):
        bench(count, base)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
