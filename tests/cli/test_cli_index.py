"""``gitml index rebuild|status`` and the run counts of ``gitml experiments list``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import gitml
from gitml.cli import index as index_cli
from testing.cli import cli, gitml_exe
from testing.git import commit_file_on_ref, git

RUNS = "refs/gitml/runs/"


def test_rebuild_and_status(repo: Path) -> None:
    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}").id for i in range(3)]
    result = cli("index", "rebuild")
    assert result.stdout.startswith("Indexed 3 runs in ")
    assert result.stderr == ""  # no progress bar when nobody watches

    state = json.loads(cli("index", "status", "--json").stdout)
    assert state["runs"] == 3 and state["broken"] == []
    assert state["path"] == str(repo / ".git" / "gitml" / "index.sqlite")
    assert state["size_bytes"] > 0 and state["refreshed_at"] is not None

    text = cli("index", "status").stdout.splitlines()
    assert text[0].split() == ["path", state["path"]]
    assert text[1].split() == ["runs", "3"]
    assert text[2].split() == ["malformed", "0"]

    tip = git(repo, "rev-parse", RUNS + ids[0]).strip()
    git(repo, "update-ref", RUNS + "f" * 32, tip)
    result = cli("index", "rebuild")
    assert "Indexed 3 runs (1 malformed records skipped)" in result.stdout
    assert result.stderr.startswith("warning: skipped malformed record refs/gitml/runs/ffff")
    text = cli("index", "status").stdout
    assert "malformed  1" in text and RUNS + "f" * 32 in text


def test_compact_gives_back_the_space_of_runs_gone_and_keeps_every_answer(repo: Path) -> None:
    client = gitml.Client()
    ids = [
        client.create_run(run_name=f"r{i}", tags={"note": "x" * 2000}, commit=True).id
        for i in range(60)
    ]
    kept = ids[:5]
    for run_id in ids[5:]:
        git(repo, "update-ref", "-d", RUNS + run_id)
    answer = [run.id for run in client.search_runs(filter_string="tags.note LIKE 'x%'")]
    assert sorted(answer) == sorted(kept)
    before = json.loads(cli("index", "status", "--json").stdout)["size_bytes"]

    said = re.fullmatch(
        r"Compacted the index: ([\d,]+) -> ([\d,]+) bytes\n", cli("index", "compact").stdout
    )
    assert said is not None
    shrunk, after = (int(n.replace(",", "")) for n in said.groups())
    assert shrunk == before and after < before  # the deleted runs' pages
    assert json.loads(cli("index", "status", "--json").stdout)["size_bytes"] == after
    again = gitml.Client()
    assert [run.id for run in again.search_runs(filter_string="tags.note LIKE 'x%'")] == answer


def test_rebuild_after_the_index_is_deleted(repo: Path) -> None:
    gitml.Client().create_run(run_name="kept")
    cli("runs", "list")
    for path in (repo / ".git" / "gitml").glob("index.sqlite*"):
        path.unlink()
    assert "Indexed 1 runs" in cli("index", "rebuild").stdout
    assert [r["name"] for r in json.loads(cli("runs", "list", "--json").stdout)] == ["kept"]


def test_rebuild_shows_progress_on_a_terminal(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = gitml.Client()
    for _ in range(2):
        client.create_run()
    monkeypatch.setattr(index_cli, "_interactive", lambda: True)
    result = cli("index", "rebuild")
    assert "Indexing runs" in result.stderr
    assert "Indexed 2 runs" in result.stdout


def test_status_of_a_repository_without_runs(repo: Path) -> None:
    state = json.loads(cli("index", "status", "--json").stdout)
    assert state["runs"] == 0 and state["refreshed_at"] is None
    assert "refreshed  never" in cli("index", "status").stdout


def test_experiments_list_counts_runs(repo: Path) -> None:
    client = gitml.Client()
    runs = [client.create_run("churn") for _ in range(3)]
    client.delete_run(runs[0].id)
    client.create_experiment("empty")
    rows = {
        line.split()[1]: line.split()[3:]
        for line in cli("experiments", "list").stdout.splitlines()[1:]
    }
    assert rows == {"churn": ["2", "1"], "empty": ["0", "0"]}
    listed = {e["name"]: e["runs"] for e in json.loads(cli("experiments", "list", "--json").stdout)}
    assert listed == {"churn": {"active": 2, "deleted": 1}, "empty": {"active": 0, "deleted": 0}}


def test_executable_rebuild_is_quiet_when_piped(repo: Path) -> None:
    gitml.Client().create_run()
    done = gitml_exe(repo, "index", "rebuild")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.startswith("Indexed 1 runs")


def test_status_names_a_record_sqlite_cannot_hold(repo: Path) -> None:
    client = gitml.Client()
    good, bad = (
        client.create_run(run_name="good", commit=True).id,
        client.create_run(run_name="bad", commit=True).id,
    )
    text = git(repo, "show", f"{RUNS}{bad}:run.yaml").replace("tags: {}", 'tags:\n  t: "\\udc00"')
    commit_file_on_ref(repo, RUNS + bad, "run.yaml", text)
    listed = cli("runs", "list", "--json")
    assert [run["id"] for run in json.loads(listed.stdout)] == [good]
    skipped = f"warning: skipped malformed record {RUNS}{bad}:run.yaml: field '(document)'"
    assert skipped in listed.stderr
    (problem,) = json.loads(cli("index", "status", "--json").stdout)["broken"]
    assert problem.startswith(f"{RUNS}{bad}:run.yaml: field '(document)': not valid YAML")
    assert "invalid Unicode character" in problem


def _garble_header(data: bytes) -> bytes:
    return b"garbage garbage!" + data[16:]


def _garble_page(data: bytes) -> bytes:
    return data[:8192] + b"\xa5" * 4096 + data[12288:]


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _text_file(data: bytes) -> bytes:
    return b"this is not a database\n" * 50


def _zero_the_pages(data: bytes) -> bytes:
    return data[:4096] + bytes(len(data) - 4096)


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage", [_garble_header, _garble_page, _truncate, _text_file, _zero_the_pages]
)
def test_a_damaged_index_is_rebuilt_from_the_refs(repo: Path, damage: Any) -> None:
    client = gitml.Client()
    for i in range(12):
        client.log_batch(client.create_run(run_name=f"r{i}").id, params={"p": "x" * 1500})
    client.index.refresh()
    client.index.close()
    index = repo / ".git" / "gitml" / "index.sqlite"
    assert not Path(f"{index}-wal").exists()  # all of it is in the main file
    whole = index.read_bytes()
    assert len(whole) > 12288  # the page garbled is one of the runs'

    index.write_bytes(damage(whole))
    done = gitml_exe(repo, "runs", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 12
    index.write_bytes(damage(whole))
    assert cli("runs", "search", "params.p != ''", "--json").stdout.count('"name"') == 12
    index.write_bytes(damage(whole))
    assert cli("index", "rebuild").stdout.startswith("Indexed 12 runs in ")
    index.write_bytes(damage(whole))
    assert json.loads(cli("index", "status", "--json").stdout)["runs"] == 12
