"""gitml.git.store against the real ``git`` binary: discovery, CAS updates, snapshots, copies."""

from __future__ import annotations

import itertools
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gitml.errors import NotARepository, NotFound, RefBusy
from gitml.git.store import EXEC_MODE, BlobRef, Change, Snapshot, Store
from testing import procs
from testing.git import FixedClock, fsck, git, init_repo
from testing.machines import refs_of

BOT = "Gitml Bot <bot@example.com>"


def files_at(repo: Path, rev: str) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", rev).split()


def put(files: dict[str, bytes | BlobRef | None]) -> Callable[[Snapshot | None], Change]:
    """An edit that writes ``files`` whatever the tip is."""
    return lambda snap: Change(dict(files))


# -- discovery ------------------------------------------------------------


def test_discover_in_the_work_tree(repo: Path) -> None:
    store = Store.discover(repo)
    assert store.root == repo
    assert not store.bare
    assert store.gitdir.resolve() == (repo / ".git").resolve()
    assert store.data_dir == store.gitdir / "gitml"


def test_discover_from_a_subdirectory(repo: Path) -> None:
    deep = repo / "src" / "models"
    deep.mkdir(parents=True)
    store = Store.discover(deep)
    assert store.root == repo
    assert store.tip("HEAD") == git(repo, "rev-parse", "HEAD").strip()


def test_discover_defaults_to_the_current_directory(repo: Path) -> None:
    assert Store.discover().root == repo


def test_discover_a_bare_repository_and_below_it(tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    store = Store.discover(bare)
    assert store.bare
    assert store.root == bare
    assert store.gitdir.resolve() == bare.resolve()
    assert Store.discover(bare / "refs" / "heads").root == bare


def test_discover_a_linked_worktree_shares_the_main_gitdir(repo: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    store = Store.discover(linked)
    assert store.root == linked
    assert store.gitdir.resolve() == (repo / ".git").resolve()
    assert store.code_version(snapshot_message="s").branch == "feature"


def test_discover_outside_a_repository_says_how_to_fix_it(tmp_path: Path) -> None:
    outside = tmp_path / "plain" / "dir"
    outside.mkdir(parents=True)
    with pytest.raises(NotARepository, match="git init") as info:
        Store.discover(outside)
    assert str(outside) in str(info.value)


def test_opening_a_plain_directory_is_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(NotARepository, match=str(tmp_path)):
        Store(tmp_path)


# -- update: identity, clock, reflog ---------------------------------------


def test_update_creates_a_ref_with_explicit_identity_and_time(repo: Path) -> None:
    clock = FixedClock(1_700_000_123.9)
    store = Store(repo, clock=clock, identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()

    tip = store.update(
        "refs/gitml/runs/abc",
        lambda snap: Change({"run.yaml": b"id: abc\n"}, root_parents=(head,)),
        "start run abc\n\nGitml-Run: abc",
    )

    assert tip is not None
    assert git(repo, "rev-parse", "refs/gitml/runs/abc").strip() == tip
    log = git(repo, "log", "-1", "--format=%an%x00%ae%x00%at%x00%cn%x00%ct%x00%P", tip)
    assert log.strip().split("\0") == [
        "Gitml Bot",
        "bot@example.com",
        "1700000123",
        "Gitml Bot",
        "1700000123",
        head,
    ]
    assert git(repo, "log", "-1", "--format=%B", tip) == "start run abc\n\nGitml-Run: abc\n\n"
    assert git(repo, "show", f"{tip}:run.yaml") == "id: abc\n"
    # Git keeps no reflog for refs outside refs/heads, refs/remotes and refs/notes.
    assert not (repo / ".git" / "logs" / "refs" / "gitml").exists()


@pytest.mark.parametrize("set_ref", [False, True])
def test_reflogs_are_written_where_git_writes_them(repo: Path, set_ref: bool) -> None:
    store = Store(repo, clock=FixedClock(1_700_000_123.9), identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()
    for ref in ("refs/heads/gitml/staging", "refs/gitml/models/m"):
        if set_ref:
            assert store.set_ref(ref, head, None, "move it\n\nGitml-Model: m")
        else:
            store.update(
                ref,
                lambda snap: Change({"a": b"1"}, root_parents=(head,)),
                "move it\n\nGitml-Model: m",
            )
    store.close()

    # A stage branch: the first line of the message, under the store's identity.
    assert git(repo, "log", "-g", "--format=%gn%x00%gs", "refs/heads/gitml/staging").strip() == (
        "Gitml Bot\0move it"
    )
    assert not (repo / ".git" / "logs" / "refs" / "gitml").exists()


def test_update_chains_commits_and_uses_the_clock_each_time(repo: Path) -> None:
    clock = FixedClock()
    store = Store(repo, clock=clock, identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()
    first = store.update("refs/gitml/x", lambda s: Change({"a": b"1"}, root_parents=(head,)), "one")
    clock.advance(60)
    # root_parents only apply to the first commit; later ones follow the tip.
    second = store.update(
        "refs/gitml/x", lambda s: Change({"b": b"2"}, root_parents=("0" * 40,)), "two"
    )
    assert git(repo, "rev-list", "--parents", "-n1", second).split() == [second, first]
    assert git(repo, "log", "--format=%at %s", "refs/gitml/x", "-2").splitlines() == [
        f"{int(clock.now)} two",
        f"{int(clock.now) - 60} one",
    ]
    assert files_at(repo, second) == ["a", "b"]
    assert git(repo, "fsck", "--full", "--no-dangling").strip() == ""


def test_update_returning_none_commits_nothing(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    assert store.update("refs/gitml/x", lambda s: None, "nothing") is None
    assert store.tip("refs/gitml/x") is None
    tip = store.update("refs/gitml/x", put({"a": b"1"}), "one")
    assert store.update("refs/gitml/x", lambda s: None, "nothing") == tip
    assert git(repo, "rev-list", "--count", "refs/gitml/x").strip() == "1"


def test_update_rederives_the_change_when_another_writer_moved_the_ref(repo: Path) -> None:
    ref = "refs/gitml/counter"
    mine = Store(repo, clock=FixedClock(), identity=BOT)
    other = Store(repo, clock=FixedClock(), identity="Other <other@example.com>")
    mine.update(ref, put({"n": b"0"}), "zero")

    def increment(snap: Snapshot | None) -> Change:
        assert snap is not None
        return Change({"n": str(int(snap.read("n") or b"0") + 1).encode()})

    seen: list[str] = []
    raced: list[str] = []

    def edit(snap: Snapshot | None) -> Change:
        assert snap is not None
        seen.append(snap.commit)
        if not raced:  # another process wins the race between our read and our swap
            won = other.update(ref, lambda s: Change({"other": b"x", **increment(s).files}), "+1")
            assert won is not None
            raced.append(won)
        return increment(snap)

    tip = mine.update(ref, edit, "+1 (mine)")

    assert tip is not None
    assert len(seen) == 2
    assert seen[1] == raced[0]  # the second call saw the other writer's commit
    assert git(repo, "rev-parse", f"{tip}^").strip() == raced[0]
    assert git(repo, "show", f"{ref}:n") == "2"  # both increments landed
    assert git(repo, "show", f"{ref}:other") == "x"
    assert git(repo, "log", "--format=%an %s", ref).splitlines() == [
        "Gitml Bot +1 (mine)",
        "Other +1",
        "Gitml Bot zero",
    ]


def test_update_of_a_new_ref_rederives_when_another_writer_created_it(repo: Path) -> None:
    ref = "refs/gitml/new"
    mine = Store(repo, clock=FixedClock(), identity=BOT)
    other = Store(repo, clock=FixedClock(), identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()
    snaps: list[str | None] = []

    def edit(snap: Snapshot | None) -> Change:
        snaps.append(snap.commit if snap else None)
        if snap is None:
            other.update(ref, put({"theirs": b"t"}), "theirs")
        return Change({"mine": b"m"}, root_parents=(head,))

    tip = mine.update(ref, edit, "mine")
    theirs = git(repo, "rev-parse", f"{ref}^").strip()
    assert snaps == [None, theirs]
    assert files_at(repo, tip or "") == ["mine", "theirs"]
    # The other writer's commit is the root: our root_parents were not used on retry.
    assert git(repo, "rev-list", "--count", ref).strip() == "2"


def test_update_waits_for_a_held_lock_instead_of_failing(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    ref = "refs/gitml/x"
    first = store.update(ref, put({"a": b"1"}), "one")
    lock = store.gitdir / "refs" / "gitml" / "x.lock"
    lock.write_bytes(b"")
    calls: list[str] = []

    def edit(snap: Snapshot | None) -> Change:
        assert snap is not None
        calls.append(snap.commit)
        if len(calls) == 2:  # the first attempt met the lock: its holder lets go now
            lock.unlink()
        return Change({"b": b"2"})

    tip = store.update(ref, edit, "two")
    assert calls == [first, first]  # tried again once the lock was gone, from the same tip
    assert git(repo, "rev-parse", ref).strip() == tip
    assert git(repo, "rev-parse", f"{tip}^").strip() == first
    assert not lock.exists()


def test_update_gives_up_as_busy_when_the_lock_is_never_released(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    ref = "refs/gitml/x"
    first = store.update(ref, put({"a": b"1"}), "one")
    lock = store.gitdir / "refs" / "gitml" / "x.lock"
    lock.write_bytes(b"")
    with pytest.raises(RefBusy, match=r"refs/gitml/x: .* nothing was written"):
        store.update(ref, put({"b": b"2"}), "two", attempts=3)
    assert lock.exists()  # someone else's lock is left alone
    assert git(repo, "rev-parse", ref).strip() == first


# A writer that stops itself (SIGSTOP) inside the window where the ref's
# .lock exists: after writing it and before renaming it over the ref.
STOP_IN_RENAME = """
import os, signal, sys
from gitml.git.store import Change, Store

rename = os.replace

def stop_before_renaming_the_ref(src, dst):
    if os.fsdecode(src).endswith("refs/gitml/x.lock"):
        print("STOPPING", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    rename(src, dst)

os.replace = stop_before_renaming_the_ref
store = Store(".", identity="Gitml Bot <bot@example.com>")
print(store.update("refs/gitml/x", lambda snap: Change({"b": b"from the child"}), "child"))
"""


def stopped_writer(repo: Path) -> subprocess.Popen[str]:
    child = procs.spawn(STOP_IN_RENAME, repo)
    procs.read_until(child, "STOPPING")
    procs.wait_stopped(child.pid)
    assert (repo / ".git" / "refs" / "gitml" / "x.lock").exists()
    return child


def test_a_live_writer_s_lock_is_never_broken_however_long_it_holds_it(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    ref = "refs/gitml/x"
    first = store.update(ref, put({"a": b"1"}), "one")
    child = stopped_writer(repo)
    lock = store.gitdir / "refs" / "gitml" / "x.lock"
    try:
        old = time.time() - 3600  # an age rule would call it stale
        os.utime(lock, (old, old))
        with pytest.raises(RefBusy, match="refs/gitml/x"):
            store.update(ref, put({"c": b"3"}), "mine", attempts=5)
        assert lock.exists()
        assert git(repo, "rev-parse", ref).strip() == first
    finally:
        child.send_signal(signal.SIGCONT)
    code, out, err = procs.finish(child)
    assert code == 0, err
    # Resumed, the writer renames its own lock: its commit is the ref's tip.
    assert git(repo, "rev-parse", ref).strip() == out.split()[-1]
    assert git(repo, "show", f"{ref}:b") == "from the child"
    assert not lock.exists()
    assert store.update(ref, put({"c": b"3"}), "mine") == git(repo, "rev-parse", ref).strip()
    fsck(repo)


def test_a_lock_left_by_a_writer_killed_while_holding_it_is_broken_at_once(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    ref = "refs/gitml/x"
    first = store.update(ref, put({"a": b"1"}), "one")
    child = stopped_writer(repo)
    child.kill()
    assert procs.finish(child)[0] == -signal.SIGKILL
    lock = store.gitdir / "refs" / "gitml" / "x.lock"
    assert lock.exists()  # what kill -9 inside the rename window leaves
    started = time.monotonic()
    tip = store.update(ref, put({"c": b"3"}), "mine", attempts=3)
    assert time.monotonic() - started < 5
    assert not lock.exists()
    assert git(repo, "rev-parse", ref).strip() == tip
    assert git(repo, "rev-parse", f"{tip}^").strip() == first  # the killed commit never landed
    assert files_at(repo, tip or "") == ["a", "c"]
    assert list((store.data_dir / "ref-locks").iterdir()) == []
    fsck(repo)


def test_a_lock_left_by_a_killed_writer_is_broken_once_stale(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    ref = "refs/gitml/x"
    store.update(ref, put({"a": b"1"}), "one")
    lock = store.gitdir / "refs" / "gitml" / "x.lock"
    lock.write_bytes(b"")  # what kill -9 inside the rename window leaves
    old = time.time() - 31
    os.utime(lock, (old, old))
    tip = store.update(ref, put({"b": b"2"}), "two", attempts=3)
    assert git(repo, "rev-parse", ref).strip() == tip
    assert not lock.exists()
    subprocess.run(["git", "fsck", "--strict"], cwd=repo, check=True, capture_output=True)


# -- tree edits -------------------------------------------------------------


def test_nested_edits_and_deletes(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    ref = "refs/gitml/tree"
    tip = store.update(
        ref,
        put({"a/b/c.txt": b"c", "a/b/d.txt": b"d", "a/e.txt": b"e", "top.txt": b"t"}),
        "create",
    )
    assert files_at(repo, tip or "") == ["a/b/c.txt", "a/b/d.txt", "a/e.txt", "top.txt"]

    tip = store.update(ref, put({"a/b/c.txt": b"c2", "a/new/f.txt": b"f"}), "edit")
    assert files_at(repo, tip or "") == [
        "a/b/c.txt",
        "a/b/d.txt",
        "a/e.txt",
        "a/new/f.txt",
        "top.txt",
    ]
    assert git(repo, "show", f"{tip}:a/b/c.txt") == "c2"
    assert git(repo, "show", f"{tip}:a/b/d.txt") == "d"

    # Deleting one of two files keeps the folder; deleting the last removes it.
    tip = store.update(ref, put({"a/b/c.txt": None}), "delete one")
    assert files_at(repo, tip or "") == ["a/b/d.txt", "a/e.txt", "a/new/f.txt", "top.txt"]
    tip = store.update(ref, put({"a/b/d.txt": None, "a/new/f.txt": None}), "delete last")
    assert files_at(repo, tip or "") == ["a/e.txt", "top.txt"]
    assert git(repo, "ls-tree", "--name-only", f"{tip}:a").split() == ["e.txt"]
    tip = store.update(ref, put({"a/e.txt": None, "missing/x": None}), "empty a")
    assert git(repo, "ls-tree", "--name-only", tip or "").split() == ["top.txt"]
    assert git(repo, "fsck", "--full", "--no-dangling").strip() == ""


def test_blob_refs_keep_their_mode_and_snapshot_reads(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    blob = store.put_blob(b"#!/bin/sh\necho hi\n")
    assert git(repo, "cat-file", "-t", blob).strip() == "blob"
    tip = store.update(
        "refs/gitml/x",
        put({"bin/run.sh": BlobRef(blob, EXEC_MODE), "data/x.txt": b"x"}),
        "m",
    )
    assert tip is not None
    assert git(repo, "ls-tree", f"{tip}:bin").split()[:3] == ["100755", "blob", blob]
    snap = store.snapshot(tip)
    assert snap.read("bin/run.sh") == b"#!/bin/sh\necho hi\n"
    assert snap.read("bin/missing") is None
    assert snap.read("data/x.txt/below") is None
    assert snap.lookup("bin") == git(repo, "rev-parse", f"{tip}:bin").strip()
    assert sorted(snap.listdir("")) == [
        ("bin", True, git(repo, "rev-parse", f"{tip}:bin").strip()),
        ("data", True, git(repo, "rev-parse", f"{tip}:data").strip()),
    ]
    assert snap.listdir("nope") == []
    assert snap.listdir("data/x.txt") == []
    with pytest.raises(NotFound):
        store.read_blob(snap.tree)


def test_refs_lists_full_names_under_a_prefix(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    a = store.update("refs/gitml/runs/a", put({"f": b"1"}), "a")
    b = store.update("refs/gitml/runs/b", put({"f": b"2"}), "b")
    store.update("refs/gitml/experiments/0", put({"f": b"3"}), "e")
    assert store.refs("refs/gitml/runs/") == {"refs/gitml/runs/a": a, "refs/gitml/runs/b": b}
    assert store.refs("refs/gitml/models") == {}


def test_reaches_agrees_with_git_or_leaves_the_question_to_it(repo: Path) -> None:
    clock = FixedClock(time.time())  # the code's commit was made now
    store = Store(repo, clock=clock, identity=BOT)
    commits = {"code": _head(repo)}
    commits["first"] = store.write_commit(None, {"f": b"1"}, (commits["code"],), "first")
    clock.advance(10)
    commits["second"] = store.write_commit(None, {"f": b"2"}, (commits["first"],), "second")
    commits["side"] = store.write_commit(None, {"f": b"s"}, (commits["first"],), "side")
    clock.advance(10)
    both = (commits["second"], commits["side"])
    commits["merge"] = store.write_commit(None, {"f": b"m"}, both, "merge")
    clock.advance(-3 * 86400)  # a machine whose clock is days behind commits on top
    commits["skewed"] = store.write_commit(None, {"f": b"k"}, (commits["merge"],), "skewed")
    found = {}
    for newer, older in itertools.product(commits, repeat=2):
        answer = store.reaches(commits[newer], commits[older])
        done = subprocess.run(
            ["git", "merge-base", "--is-ancestor", commits[older], commits[newer]], cwd=repo
        )
        assert answer in (None, done.returncode == 0), (newer, older)
        found[newer, older] = answer
    assert found["merge", "code"] is found["merge", "side"] is True
    assert found["side", "second"] is found["first", "merge"] is False
    assert found["skewed", "first"] is None  # made "before" its ancestors: git is asked
    assert store.reaches(commits["merge"], commits["code"], limit=1) is None
    assert store.reaches(commits["merge"], "0" * 40) is None  # no such object here


# -- code versions -----------------------------------------------------------


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


class UserState:
    """What the user sees of their repository: index bytes, status, refs, stash."""

    def __init__(self, repo: Path) -> None:
        self.status = git(repo, "status", "--porcelain")  # refreshes the index first
        index = repo / ".git" / "index"
        self.index = index.read_bytes() if index.exists() else None
        self.index_mtime = index.stat().st_mtime_ns if index.exists() else None
        self.refs = git(repo, "for-each-ref")
        self.files = {
            str(p.relative_to(repo)): p.read_bytes()
            for p in sorted(repo.rglob("*"))
            if ".git" not in p.parts and p.is_file() and not p.is_symlink()
        }

    def assert_unchanged(self, repo: Path) -> None:
        index = repo / ".git" / "index"
        # Compare bytes before running git again (git status may refresh the index).
        assert (index.read_bytes() if index.exists() else None) == self.index
        assert (index.stat().st_mtime_ns if index.exists() else None) == self.index_mtime
        after = UserState(repo)
        assert after.status == self.status
        assert after.refs == self.refs
        assert after.files == self.files


def test_code_version_of_a_clean_tree_has_no_snapshot(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    objects = git(repo, "count-objects", "-v")
    code = store.code_version(snapshot_message="snapshot")
    assert (code.commit, code.branch, code.dirty, code.snapshot) == (
        _head(repo),
        "main",
        False,
        None,
    )
    assert code.tip == code.commit
    assert git(repo, "count-objects", "-v") == objects  # nothing written


def test_code_version_snapshots_a_modified_file_without_touching_the_index(repo: Path) -> None:
    clock = FixedClock(1_700_000_500)
    store = Store(repo, clock=clock, identity=BOT)
    (repo / "train.py").write_text("print('tuned')\n")
    (repo / "notes.txt").write_text("untracked\n")
    before = UserState(repo)
    assert before.status == " M train.py\n?? notes.txt\n"

    code = store.code_version(snapshot_message="gitml: snapshot for run 1")

    before.assert_unchanged(repo)
    assert code.dirty and code.commit == _head(repo) and code.branch == "main"
    assert code.snapshot is not None and code.tip == code.snapshot
    assert git(repo, "rev-list", "--parents", "-n1", code.snapshot).split() == [
        code.snapshot,
        _head(repo),
    ]
    assert git(repo, "show", f"{code.snapshot}:train.py") == "print('tuned')\n"
    assert files_at(repo, code.snapshot) == ["notes.txt", "train.py"]  # as git stash -u
    assert git(repo, "show", f"{code.snapshot}:notes.txt") == "untracked\n"
    assert git(repo, "log", "-1", "--format=%an|%at|%s", code.snapshot) == (
        "Gitml Bot|1700000500|gitml: snapshot for run 1\n"
    )
    assert git(repo, "stash", "list") == ""
    assert git(repo, "fsck", "--full", "--no-dangling").strip() == ""


def test_code_version_sees_a_staged_only_change(repo: Path) -> None:
    (repo / "train.py").write_text("print('staged')\n")
    (repo / "src").mkdir()
    (repo / "src" / "model.py").write_text("class Model: ...\n")
    git(repo, "add", "train.py", "src/model.py")
    before = UserState(repo)
    assert before.status == "A  src/model.py\nM  train.py\n"

    code = Store(repo, identity=BOT).code_version(snapshot_message="s")

    before.assert_unchanged(repo)
    assert code.dirty and code.snapshot is not None
    assert git(repo, "show", f"{code.snapshot}:train.py") == "print('staged')\n"
    assert git(repo, "show", f"{code.snapshot}:src/model.py") == "class Model: ...\n"


def test_code_version_takes_the_work_tree_over_the_index(repo: Path) -> None:
    (repo / "train.py").write_text("staged\n")
    git(repo, "add", "train.py")
    (repo / "train.py").write_text("on disk\n")
    code = Store(repo, identity=BOT).code_version(snapshot_message="s")
    assert code.snapshot is not None
    assert git(repo, "show", f"{code.snapshot}:train.py") == "on disk\n"
    assert git(repo, "show", ":train.py") == "staged\n"  # the user's index is as it was


@pytest.mark.parametrize("staged", [False, True], ids=["rm", "git-rm"])
def test_code_version_of_a_deleted_tracked_file(repo: Path, staged: bool) -> None:
    (repo / "keep.py").write_text("keep\n")
    git(repo, "add", "keep.py")
    git(repo, "commit", "-q", "-m", "keep")
    if staged:
        git(repo, "rm", "-q", "train.py")
    else:
        (repo / "train.py").unlink()
    before = UserState(repo)

    code = Store(repo, identity=BOT).code_version(snapshot_message="s")

    before.assert_unchanged(repo)
    assert code.dirty and code.snapshot is not None
    assert files_at(repo, code.snapshot) == ["keep.py"]
    assert git(repo, "rev-parse", f"{code.snapshot}^").strip() == _head(repo)


def test_code_version_with_only_untracked_files_snapshots_them_but_not_ignored_ones(
    repo: Path,
) -> None:
    (repo / "scratch.py").write_text("x = 1\n")
    (repo / "out").mkdir()
    (repo / "out" / "model.bin").write_bytes(b"\0\1")
    (repo / ".git" / "info" / "exclude").write_text("out/\n")
    before = UserState(repo)
    code = Store(repo, identity=BOT).code_version(snapshot_message="s")
    before.assert_unchanged(repo)
    assert (code.commit, code.dirty, code.omitted) == (_head(repo), True, ())
    assert code.snapshot is not None
    assert files_at(repo, code.snapshot) == ["scratch.py", "train.py"]


def test_code_version_takes_at_most_a_thousand_untracked_files(repo: Path) -> None:
    (repo / "env").mkdir()  # say, a virtualenv nobody told git to ignore
    for i in range(1002):
        (repo / "env" / f"m{i:04}.py").write_text(f"N = {i}\n")
    code = Store(repo, identity=BOT).code_version(snapshot_message="s")
    assert code.omitted == ("env/m1000.py", "env/m1001.py")
    assert code.snapshot is not None
    assert len(files_at(repo, code.snapshot)) == 1001  # train.py and 1,000 of env/


def test_code_version_with_only_ignored_files_is_clean(repo: Path) -> None:
    (repo / "out").mkdir()
    (repo / "out" / "model.bin").write_bytes(b"\0\1")
    (repo / ".git" / "info" / "exclude").write_text("out/\n")
    code = Store(repo, identity=BOT).code_version(snapshot_message="s")
    assert (code.commit, code.dirty, code.snapshot) == (_head(repo), False, None)


def test_code_version_sees_an_exec_bit_change(repo: Path) -> None:
    # git status reports a mode-only change, and `git stash create` records it.
    (repo / "train.py").chmod(0o755)
    before = UserState(repo)
    assert before.status == " M train.py\n"
    code = Store(repo, identity=BOT).code_version(snapshot_message="s")
    before.assert_unchanged(repo)
    assert code.dirty and code.snapshot is not None
    assert git(repo, "ls-tree", code.snapshot, "train.py").split()[0] == "100755"


def test_code_version_ignores_the_exec_bit_when_core_filemode_is_false(repo: Path) -> None:
    git(repo, "config", "core.filemode", "false")
    (repo / "train.py").chmod(0o755)
    assert git(repo, "status", "--porcelain") == ""
    code = Store(repo, identity=BOT).code_version(snapshot_message="s")
    assert (code.dirty, code.snapshot) == (False, None)


def test_code_version_in_the_middle_of_a_merge_conflict(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "train.py").write_text("other\n")
    git(repo, "commit", "-q", "-am", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "train.py").write_text("main\n")
    git(repo, "commit", "-q", "-am", "main")
    merge = subprocess.run(["git", "merge", "-q", "other"], cwd=repo, capture_output=True)
    assert merge.returncode == 1
    before = UserState(repo)
    assert before.status == "UU train.py\n"

    code = Store(repo, identity=BOT).code_version(snapshot_message="s")

    before.assert_unchanged(repo)
    assert code.dirty and code.snapshot is not None
    assert git(repo, "show", f"{code.snapshot}:train.py") == (repo / "train.py").read_text()
    assert git(repo, "rev-parse", f"{code.snapshot}^").strip() == _head(repo)


def test_code_version_reads_a_branch_git_packed_and_a_linked_worktree_s_own_head(
    repo: Path, tmp_path: Path
) -> None:
    git(repo, "pack-refs", "--all")  # as a clone keeps its branches
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    code = Store(repo, clock=FixedClock(), identity=BOT).code_version(snapshot_message="s")
    assert (code.commit, code.branch) == (_head(repo), "main")
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    git(linked, "commit", "-q", "--allow-empty", "-m", "on feature")
    code = Store(linked, clock=FixedClock(), identity=BOT).code_version(snapshot_message="s")
    assert (code.commit, code.branch) == (_head(linked), "feature")


def test_creating_a_ref_checks_packed_refs_under_its_lock(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    first = store.update("refs/gitml/runs/a", put({"f": b"1"}), "a")
    assert first is not None
    git(repo, "pack-refs", "--all")
    # Packed only: a creation finds it there, and an update derives from it.
    assert not store.set_ref("refs/gitml/runs/a", _head(repo), None, "again")
    second = store.update("refs/gitml/runs/a", put({"f": b"2"}), "edit")
    assert git(repo, "rev-parse", "refs/gitml/runs/a^").strip() == first
    assert store.set_ref("refs/gitml/runs/b", second, None, "new")
    assert refs_of(repo, "refs/gitml/") == {
        "refs/gitml/runs/a": second,
        "refs/gitml/runs/b": second,
    }
    (repo / ".git" / "refs" / "gitml" / "runs" / "c.lock").write_text("held\n")
    with pytest.raises(RefBusy):
        store.update("refs/gitml/runs/c", put({"f": b"3"}), "c", attempts=3)
    assert "refs/gitml/runs/c" not in refs_of(repo, "refs/gitml/")


def test_code_version_on_an_unborn_head(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "fresh", commit=False)
    store = Store(repo, identity=BOT)
    assert store.code_version(snapshot_message="s") == store.code_version(snapshot_message="s")
    code = store.code_version(snapshot_message="s")
    assert (code.commit, code.branch, code.dirty, code.snapshot) == (None, "main", False, None)
    assert code.tip is None

    (repo / "train.py").write_text("untracked\n")
    assert not store.code_version(snapshot_message="s").dirty

    git(repo, "add", "train.py")
    code = store.code_version(snapshot_message="s")
    assert code.commit is None and code.dirty and code.snapshot is not None
    assert git(repo, "rev-list", "--parents", "-n1", code.snapshot).split() == [code.snapshot]
    assert git(repo, "show", f"{code.snapshot}:train.py") == "untracked\n"


def test_code_version_on_a_detached_head(repo: Path) -> None:
    (repo / "train.py").write_text("v2\n")
    git(repo, "commit", "-q", "-am", "v2")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    store = Store(repo, identity=BOT)
    code = store.code_version(snapshot_message="s")
    assert (code.commit, code.branch, code.dirty) == (_head(repo), None, False)

    (repo / "train.py").write_text("dirty\n")
    code = store.code_version(snapshot_message="s")
    assert code.branch is None and code.dirty
    assert git(repo, "rev-parse", f"{code.snapshot}^").strip() == _head(repo)


def test_code_version_of_a_bare_repository_is_never_dirty(tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "r.git", bare=True)
    code = Store(bare).code_version(snapshot_message="s")
    assert (code.commit, code.dirty, code.snapshot) == (None, False, None)


# -- copying code between repositories --------------------------------------


def test_import_history_copies_a_commit_and_its_history(repo: Path, tmp_path: Path) -> None:
    (repo / "src").mkdir()
    (repo / "src" / "model.py").write_text("model\n")
    git(repo, "add", "src")
    git(repo, "commit", "-q", "-m", "model")
    (repo / "train.py").write_text("v3\n")
    git(repo, "commit", "-q", "-am", "v3")
    work = Store(repo, identity=BOT)
    code = work.code_version(snapshot_message="dirty")
    assert code.snapshot is None
    head = _head(repo)

    records = init_repo(tmp_path / "records.git", bare=True)
    target = Store(records, identity=BOT)
    target.import_history(work, head)

    assert target.has_object(head)
    assert git(records, "rev-list", head) == git(repo, "rev-list", head)
    assert git(records, "show", f"{head}:src/model.py") == "model\n"
    git(records, "update-ref", "refs/gitml/code", head)
    fsck = git(records, "fsck", "--full", "--strict")
    assert fsck.strip() == ""

    # A later, dirty snapshot: only what is missing is copied; its parent is already there.
    (repo / "train.py").write_text("dirty\n")
    code = work.code_version(snapshot_message="dirty")
    assert code.snapshot is not None
    packs = sorted((records / "objects" / "pack").glob("*.pack"))
    target.import_history(work, code.snapshot)
    target.import_history(work, code.snapshot)  # a no-op the second time
    assert len(sorted((records / "objects" / "pack").glob("*.pack"))) == len(packs) + 1
    git(records, "update-ref", "refs/gitml/code", code.snapshot)
    assert git(records, "show", f"{code.snapshot}:train.py") == "dirty\n"
    assert git(records, "fsck", "--full", "--strict").strip() == ""


def test_export_tree_restores_files_with_the_exec_bit(repo: Path, tmp_path: Path) -> None:
    (repo / "bin").mkdir()
    (repo / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "bin" / "run.sh").chmod(0o755)
    (repo / "data").mkdir()
    (repo / "data" / "rows.csv").write_text("a,b\n")
    os.symlink("bin/run.sh", repo / "run")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "layout")
    store = Store(repo, identity=BOT)

    into = tmp_path / "restored"
    count = store.export_tree(_head(repo), into)

    assert count == 4
    assert (into / "train.py").read_text() == "print('training')\n"
    assert (into / "data" / "rows.csv").read_text() == "a,b\n"
    script = into / "bin" / "run.sh"
    assert script.read_text() == "#!/bin/sh\necho run\n"
    assert script.stat().st_mode & stat.S_IXUSR
    assert not (into / "train.py").stat().st_mode & stat.S_IXUSR
    assert (into / "run").is_symlink() and os.readlink(into / "run") == "bin/run.sh"
    assert not (into / ".git").exists()


def test_export_tree_of_a_blob_is_not_found(repo: Path, tmp_path: Path) -> None:
    store = Store(repo)
    blob = git(repo, "rev-parse", "HEAD:train.py").strip()
    with pytest.raises(NotFound):
        store.export_tree(blob, tmp_path / "x")


# -- packed refs ------------------------------------------------------------------


def test_refs_and_tip_read_packed_refs_and_a_loose_one_over_a_packed_one(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    a = store.update("refs/gitml/runs/a", put({"f": b"1"}), "a")
    b = store.update("refs/gitml/runs/b", put({"f": b"2"}), "b")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "gitml" / "runs" / "a").exists()
    assert store.refs("refs/gitml/runs") == {"refs/gitml/runs/a": a, "refs/gitml/runs/b": b}
    assert store.packed_refs("refs/gitml/runs") == {"a": a, "b": b}
    git(repo, "update-ref", "refs/gitml/runs/a", b)  # loose now, over the packed line
    assert (repo / ".git" / "refs" / "gitml" / "runs" / "a").exists()
    assert store.tip("refs/gitml/runs/a") == b
    assert store.refs("refs/gitml/runs/") == {"refs/gitml/runs/a": b, "refs/gitml/runs/b": b}
    git(repo, "update-ref", "-d", "refs/gitml/runs/b")  # rewrites packed-refs
    assert store.tip("refs/gitml/runs/b") is None
    assert store.refs("refs/gitml") == {"refs/gitml/runs/a": b}
    assert store.tip("refs/gitml/runs") is None  # a folder of refs is no ref


def test_create_packed_adds_refs_git_reads_and_keeps_what_the_file_held(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "tag", "-a", "-m", "annotated", "v1")  # packed with its peeled line
    old = store.update("refs/gitml/runs/old", put({"f": b"0"}), "old")
    git(repo, "pack-refs", "--all")
    loose = store.update("refs/gitml/runs/loose", put({"f": b"1"}), "loose")
    before = refs_of(repo, "refs/")
    names = [f"refs/gitml/runs/{i:04x}" for i in range(300, 0, -7)]  # not in order
    existing = {"refs/gitml/runs/old": head, "refs/gitml/runs/loose": head}
    created = store.create_packed({**{name: head for name in names}, **existing})
    assert created == {name: head for name in names}  # those that existed are left alone
    assert refs_of(repo, "refs/") == {**before, **created}
    assert not any(name.startswith("0") for name in os.listdir(repo / ".git/refs/gitml/runs"))
    # git finds each one by its binary search of a file that says it is sorted.
    assert git(repo, "rev-parse", *names).split() == [head] * len(names)
    assert git(repo, "rev-parse", "v1^{}").strip() == head
    data = (repo / ".git" / "packed-refs").read_bytes()
    assert data.startswith(b"# pack-refs with: peeled fully-peeled sorted \n")
    assert b"\n^" + head.encode() + b"\n" in data  # the tag's peeled line, kept
    assert store.tip("refs/gitml/runs/old") == old and store.tip("refs/gitml/runs/loose") == loose
    fsck(repo)
    git(repo, "pack-refs", "--all")  # git rewrites the file it finds
    assert refs_of(repo, "refs/") == {**before, **created}
    # A packed run is deleted as any other, the others left where they are.
    assert store.set_ref(names[0], None, head, "delete")
    del created[names[0]]
    assert refs_of(repo, "refs/") == {**before, **created}
    assert git(repo, "rev-parse", "v1^{}").strip() == head


def test_create_packed_keeps_what_it_wrote_as_parsed_until_git_rewrites_the_file(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "pack-refs", "--all")
    created = store.create_packed({f"refs/gitml/runs/{i:02x}": head for i in range(5)})
    fresh = Store(repo).packed_tips()  # parsed from the file
    assert fresh.items() >= created.items()

    def no_parse(*args: object) -> bytes:
        raise AssertionError("packed-refs was read again")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "read_bytes", no_parse)
        patched.setattr("builtins.open", no_parse)
        assert store.packed_tips() == fresh
    git(repo, "update-ref", "-d", "refs/gitml/runs/00")  # git replaces the file
    assert "refs/gitml/runs/00" not in store.packed_tips()
    assert store.packed_tips() == Store(repo).packed_tips()


def test_create_packed_claims_no_peeling_a_headerless_file_did_not(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "tag", "-a", "-m", "annotated", "v1")
    tag = git(repo, "rev-parse", "v1").strip()
    git(repo, "update-ref", "-d", "refs/tags/v1")
    # As git before 1.6 wrote it: no header, so no ^ line for the annotated tag.
    (repo / ".git" / "packed-refs").write_text(f"{tag} refs/tags/v1\n")
    store = Store(repo, clock=FixedClock(), identity=BOT)
    assert store.create_packed({"refs/gitml/runs/a": head}) == {"refs/gitml/runs/a": head}
    data = (repo / ".git" / "packed-refs").read_text()
    assert data == f"# pack-refs with: sorted \n{head} refs/gitml/runs/a\n{tag} refs/tags/v1\n"
    assert git(repo, "rev-parse", "v1^{}").strip() == head  # git peels it itself
    assert refs_of(repo, "refs/") == {
        "refs/heads/main": head,
        "refs/gitml/runs/a": head,
        "refs/tags/v1": tag,
    }


def test_create_packed_sorts_a_file_that_is_not_sorted(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "tag", "-a", "-m", "annotated", "v1")
    tag = git(repo, "rev-parse", "v1").strip()
    git(repo, "update-ref", "-d", "refs/tags/v1")
    # Peeled but not sorted (another tool wrote it), so git reads it whole.
    (repo / ".git" / "packed-refs").write_text(
        f"# pack-refs with: peeled \n{tag} refs/tags/v1\n^{head}\n{head} refs/gitml/runs/b\n"
    )
    store = Store(repo, clock=FixedClock(), identity=BOT)
    wanted = {"refs/gitml/runs/c": head, "refs/gitml/runs/a": head, "refs/gitml/runs/b": tag}
    assert store.create_packed(wanted) == {"refs/gitml/runs/c": head, "refs/gitml/runs/a": head}
    assert (repo / ".git" / "packed-refs").read_text() == (
        "# pack-refs with: peeled sorted \n"
        f"{head} refs/gitml/runs/a\n{head} refs/gitml/runs/b\n{head} refs/gitml/runs/c\n"
        f"{tag} refs/tags/v1\n^{head}\n"
    )
    names = ["refs/gitml/runs/a", "refs/gitml/runs/b", "refs/gitml/runs/c", "v1^{}"]
    assert git(repo, "rev-parse", *names).split() == [head] * 4
    fsck(repo)


def test_create_packed_leaves_everything_while_packed_refs_is_locked(repo: Path) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()
    lock = repo / ".git" / "packed-refs.lock"
    lock.write_bytes(b"git's\n")
    before = refs_of(repo, "refs/")
    assert store.create_packed({"refs/gitml/runs/a": head}) == {}
    assert refs_of(repo, "refs/") == before and lock.read_bytes() == b"git's\n"
    assert not (repo / ".git" / "packed-refs").exists()
    lock.unlink()
    assert store.create_packed({"refs/gitml/runs/a": head}) == {"refs/gitml/runs/a": head}
    assert not lock.exists()


def test_create_packed_writes_nothing_where_refs_are_not_stored_in_files(repo: Path) -> None:
    # git 2.39 cannot make a reftable repository; one declared so must not get a
    # packed-refs file that newer git would never read.
    git(repo, "config", "extensions.refStorage", "reftable")
    store = Store(repo, clock=FixedClock(), identity=BOT)
    assert store.create_packed({"refs/gitml/runs/a": "0" * 39 + "1"}) == {}
    assert not (repo / ".git" / "packed-refs").exists()


def test_create_packed_leaves_a_ref_another_writer_holds_or_creates_meanwhile(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(repo, clock=FixedClock(), identity=BOT)
    head = git(repo, "rev-parse", "HEAD").strip()
    other = store.update("refs/gitml/runs/other", put({"f": b"1"}), "other")
    runs = repo / ".git" / "refs" / "gitml" / "runs"
    (runs / "held.lock").write_text(other + "\n")  # a writer between its lock and its rename
    listings = []
    real = store.loose_names

    def listing(folders: dict[str, str]) -> set[str]:
        listings.append(1)
        if len(listings) == 2:  # packed-refs is in place
            # A writer that checks now finds the ref exists...
            with pytest.raises(AssertionError, match="reference already exists"):
                git(repo, "update-ref", "refs/gitml/runs/theirs", other, "0" * 40)
            # ...and those that checked before write it all the same, or hold its lock.
            git(repo, "update-ref", "refs/gitml/runs/theirs", other)
            git(repo, "update-ref", "refs/gitml/runs/same", head)
            (runs / "late.lock").write_text(other + "\n")
        return real(folders)

    monkeypatch.setattr(store, "loose_names", listing)
    names = ("mine", "held", "theirs", "same", "late")
    wanted = {f"refs/gitml/runs/{name}": head for name in names}
    created = store.create_packed(wanted)
    assert created == {"refs/gitml/runs/mine": head, "refs/gitml/runs/same": head}
    refs = refs_of(repo, "refs/")
    assert refs["refs/gitml/runs/theirs"] == other  # their value, not hidden by ours
    assert "refs/gitml/runs/held" not in refs
    packed = store.packed_refs("refs/gitml/runs")
    assert "held" not in packed and packed["mine"] == head


def test_a_name_git_cannot_store_names_no_ref(repo: Path) -> None:
    # pytest turns warnings into errors: dulwich warned about "//" before finding nothing.
    store = Store(repo)
    assert store.tip("refs/heads/main") == git(repo, "rev-parse", "main").strip()
    for name in ("refs/gitml/runs//models/{name}", "refs/gitml/runs/a b", "refs/gitml/runs/"):
        assert store.tip(name) is None
