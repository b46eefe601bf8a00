"""The one wrapper of the ``git`` binary, against the real git."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gitml.git import command
from gitml.git.command import GitFailed
from testing.git import git, init_repo
from testing.procs import wait_for

# A pre-receive hook that refuses with more lines than a summary would keep, each
# padded the way git's sideband pads "remote:" lines.
REFUSING_HOOK = """#!/bin/sh
echo "gitml: push rejected: 4 problem(s)    " >&2
for n in 1 2 3 4; do echo "problem $n        " >&2; done
exit 1
"""


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_failure_keeps_every_line_git_wrote_without_padding(tmp_path: Path) -> None:
    remote = init_repo(tmp_path / "remote.git", bare=True)
    executable(remote / "hooks" / "pre-receive", REFUSING_HOOK)
    work = init_repo(tmp_path / "work")
    with pytest.raises(GitFailed) as refused:
        command.run(["push", str(remote), "main"], cwd=work)
    pieces = refused.value.said.split(" / ")
    assert pieces[0] == "remote: gitml: push rejected: 4 problem(s)"
    assert pieces[1:5] == [f"remote: problem {n}" for n in (1, 2, 3, 4)]
    assert all(piece == piece.rstrip() for piece in pieces)
    assert str(refused.value) == f"git push failed: {refused.value.said}"
    assert git(remote, "for-each-ref") == ""


def test_an_accepted_exit_code_is_no_failure(tmp_path: Path) -> None:
    work = init_repo(tmp_path / "work")
    (work / "train.py").write_text("changed\n")
    assert command.run(["diff", "--quiet"], cwd=work, ok=(0, 1)).returncode == 1
    # Silent and refused: the exit code is what git said.
    with pytest.raises(GitFailed, match=r"^git diff failed: exit 1$"):
        command.run(["diff", "--quiet"], cwd=work)


def test_git_messages_are_english_and_nobody_is_asked_for_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "1")
    work = init_repo(tmp_path / "work")
    assert command.environment()["LC_ALL"] == "C"
    assert command.environment()["GIT_TERMINAL_PROMPT"] == "0"
    with pytest.raises(GitFailed, match="does not appear to be a git repository"):
        command.run(["push", "nowhere", "main"], cwd=work)


def test_without_a_git_binary_the_error_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GitFailed, match=r"^git status failed: cannot run git: "):
        command.run(["status"], cwd=tmp_path)
    assert command.start(["ls-files"], cwd=tmp_path) is None


def test_binary_input_and_output(tmp_path: Path) -> None:
    work = init_repo(tmp_path / "work")
    out = command.run_binary(["cat-file", "--batch"], cwd=work, stdin=b"HEAD:train.py\n")
    assert out.endswith(b"blob 18\nprint('training')\n\n")
    # More than a pipe holds, both ways, and an answer far larger than the question.
    many = b"HEAD:train.py\n" * 5_000
    out = command.run_binary(["cat-file", "--batch", "--buffer"], cwd=work, stdin=many)
    assert out == git(work, "cat-file", "--batch", stdin=many.decode()).encode()
    with pytest.raises(GitFailed, match=r"^git cat-file failed: .*Not a valid object name HEAD~9"):
        command.run_binary(["cat-file", "-p", "HEAD~9"], cwd=work, stdin=b"")


def test_a_stopped_call_kills_every_process_git_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `git hang` runs git-hang from PATH, which starts a grandchild and waits on it:
    # killing git alone would leave the grandchild running.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "sleeper.pid"
    executable(bin_dir / "git-hang", f"#!/bin/sh\nsleep 600 &\necho $! > {pid_file}\nwait\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    class Stopped(Exception):
        pass

    def stop(waited: float) -> Exception | None:
        started = pid_file.exists() and pid_file.read_text().endswith("\n")
        return Stopped(f"after {waited:.2f} s") if started else None

    with pytest.raises(Stopped):
        command.run_watched(["hang"], cwd=tmp_path, stdin=None, stop=stop)
    sleeper = int(pid_file.read_text())

    def gone() -> bool:
        try:
            state = Path(f"/proc/{sleeper}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        return state in ("Z", "X")  # killed, waiting for init to reap it

    wait_for(gone, 10, "the grandchild to be killed")


def test_a_watched_call_that_finishes_answers_like_run(tmp_path: Path) -> None:
    work = init_repo(tmp_path / "work")
    done = command.run_watched(
        ["hash-object", "--stdin"], cwd=work, stdin="x\n", stop=lambda waited: None
    )
    assert done.returncode == 0
    assert done.stdout.strip() == git(work, "hash-object", "--stdin", stdin="x\n").strip()


def test_a_begun_call_writes_more_than_a_pipe_holds_without_being_read(tmp_path: Path) -> None:
    work = init_repo(tmp_path / "work")
    head = git(work, "rev-parse", "HEAD").strip()
    git(
        work,
        "update-ref",
        "--stdin",
        stdin="".join(f"create refs/many/{n} {head}\n" for n in range(3000)),
    )
    listing = command.begin(["ls-remote", "--refs", str(work)], cwd=tmp_path, capture=True)
    # It ends on its own: its 200 KB wait for nobody, where a pipe would hold 64 KiB.
    wait_for(lambda: listing.process.poll() is not None, 30, "git ls-remote to end unread")
    out = listing.wait()
    assert len(out) > 65_536
    assert out == git(tmp_path, "ls-remote", "--refs", str(work))
    listing.stop()  # once it ended: nothing to do, and no error


def test_a_begun_call_that_fails_says_why_and_what_it_captured_is_gone(tmp_path: Path) -> None:
    listing = command.begin(["ls-remote", str(tmp_path / "gone.git")], cwd=tmp_path, capture=True)
    with pytest.raises(GitFailed, match=r"^git ls-remote failed: .*gone\.git"):
        listing.wait()
    assert listing.output is not None and listing.output.closed
