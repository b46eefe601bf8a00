"""Runs whose artifact manifest was edited by hand, as a foreign writer could."""

from __future__ import annotations

from pathlib import Path

import yaml

import gitml

from .git import commit_file_on_ref, git


def add_manifest_entry(repo: Path, run_id: str, path: str) -> str:
    """Commit (with plain ``git``) a copy of the run's first manifest entry under ``path``."""
    ref = f"refs/gitml/runs/{run_id}"
    manifest = yaml.safe_load(git(repo, "show", f"{ref}:artifacts.yaml"))
    manifest["artifacts"].append({**manifest["artifacts"][0], "path": path})
    return commit_file_on_ref(repo, ref, "artifacts.yaml", yaml.safe_dump(manifest))


def external_model_run(client: gitml.Client) -> str:
    """A run with ``model/MLmodel`` in the external store (its bytes need no tree entry)."""
    run = client.create_run()
    client.log_text(run.id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.id)
    return run.id
