"""The wheel ships the JSON Schemas, the web UI's files and the ``gitml`` command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_schemas_and_entry_point(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("gitml-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for schema in sorted((ROOT / "schemas").glob("*.schema.json")):
            packaged = f"gitml/_schemas/{schema.name}"
            assert packaged in names
            assert archive.read(packaged) == schema.read_bytes()
        # The web UI's pages ship as package data: no CDN, no network at run time.
        for page in sorted((ROOT / "gitml" / "ui" / "static").iterdir()):
            assert archive.read(f"gitml/ui/static/{page.name}") == page.read_bytes()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "gitml = gitml.cli:main" in archive.read(entry_points).decode()
