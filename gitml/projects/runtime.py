"""The running gitml, for the environments gitml builds to run projects in.

A project's script logs with ``import gitml``, so the venv or conda env it runs
in needs gitml: this same version (a package index may have another one, or
none), and without reaching an index (the machine may reach none). MLflow
installs itself into its envs with ``pip install mlflow==<version>``, from the
index; gitml takes itself and its dependencies from this process instead:

- gitml as a wheel made from the running package. A source checkout (an
  editable install) becomes a wheel holding a ``.pth`` file naming the
  checkout, as pip's editable installs do, so edits show in the env at once.
- its dependencies, when the env's Python loads this interpreter's compiled
  extensions (the same ``EXT_SUFFIX``): each installed distribution repacked
  as a wheel from the files its ``RECORD`` lists. For another Python, and for
  a distribution without a ``RECORD``, they are requirements the env's
  installer takes from the package index, as it takes the project's own.

The wheels go in with ``--no-index --no-deps`` before the project's
requirements, so a project that lists ``gitml`` (as MLflow projects list
``mlflow``) finds it installed.

Docker runs an image gitml does not build: the running package is mounted at
``/gitml/lib`` and put first on ``PYTHONPATH``, and the image brings the
dependencies (``dependency_requirements``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import re
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gitml._version import __version__
from gitml.format.schemas import schema_dir

DOCKER_LIB = "/gitml/lib"
# What an installer writes itself: a repacked wheel must not carry this machine's.
_INSTALLER_FILES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Installation:
    """What an env gets: wheels installed without an index, requirements from the index."""

    wheels: tuple[Path, ...]
    requirements: tuple[str, ...]


def package_dir() -> Path:
    """The folder of the running ``gitml`` package."""
    return Path(__file__).resolve().parent.parent


def is_source_checkout() -> bool:
    """True when gitml runs from its source tree, whose schemas sit beside the package."""
    return schema_dir().resolve() != package_dir() / "_schemas"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _metadata() -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution("gitml")
    except importlib.metadata.PackageNotFoundError:
        return None


def dependency_requirements() -> tuple[str, ...]:
    """gitml's own requirements (extras left out), as its installed metadata states them."""
    dist = _metadata()
    requires = (dist.requires or []) if dist is not None else []
    return tuple(r for r in requires if not re.search(r"\bextra\s*==", r))


@functools.cache
def dependencies() -> tuple[importlib.metadata.Distribution, ...]:
    """The installed distributions gitml needs, with theirs, in a stable order.

    A requirement whose distribution is not installed here is one whose marker
    excludes this Python (``exceptiongroup; python_version < "3.11"``): skipped.
    Found once a process: each run's env hash names them, and finding them reads
    the metadata of every installed distribution (0.1 to 1 s).
    """
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = list(dependency_requirements())
    while pending:
        match = _NAME.match(pending.pop().strip())
        if match is None or _canonical(match.group(0)) in found:
            continue
        try:
            dist = importlib.metadata.distribution(match.group(0))
        except importlib.metadata.PackageNotFoundError:
            continue
        found[_canonical(match.group(0))] = dist
        pending.extend(r for r in dist.requires or [] if not re.search(r"\bextra\s*==", r))
    return tuple(found[name] for name in sorted(found))


def identity() -> dict[str, object]:
    """What an env built with the running gitml depends on: part of the env's hash."""
    return {
        "gitml": __version__,
        "location": str(package_dir()),
        "dependencies": [f"{d.metadata['Name']}=={d.version}" for d in dependencies()],
    }


def ext_suffix(python: Path) -> str:
    """The suffix of ``python``'s compiled extensions (Python version, ABI and platform)."""
    if python == Path(sys.executable):
        return str(sysconfig.get_config_var("EXT_SUFFIX"))
    done = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def prepare(folder: Path, python: Path) -> Installation:
    """The wheels (written into ``folder``) and requirements that give ``python`` this gitml."""
    wheels = [gitml_wheel(folder, editable=is_source_checkout())]
    if ext_suffix(python) != ext_suffix(Path(sys.executable)):
        return Installation(tuple(wheels), dependency_requirements())
    requirements = []
    for dist in dependencies():
        wheel = repacked_wheel(dist, folder)
        if wheel is None:
            requirements.append(f"{dist.metadata['Name']}=={dist.version}")
        else:
            wheels.append(wheel)
    return Installation(tuple(wheels), tuple(requirements))


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


class _WheelWriter:
    """A wheel being written: each file, then its dist-info's WHEEL and RECORD."""

    def __init__(self, path: Path, info: str) -> None:
        self.path = path
        self.info = info  # the .dist-info folder's name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = zipfile.ZipFile(path, "w")
        self._record: list[str] = []

    def add(self, name: str, data: bytes) -> None:
        self._zip.writestr(name, data)
        self._record.append(f"{name},sha256={_digest(data)},{len(data)}")

    def close(self) -> Path:
        self.add(
            f"{self.info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: gitml\nRoot-Is-Purelib: false\nTag: py3-none-any\n",
        )
        self._record.append(f"{self.info}/RECORD,,")
        self._zip.writestr(f"{self.info}/RECORD", "\n".join(self._record) + "\n")
        self._zip.close()
        return self.path


def _wheel_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def gitml_wheel(folder: Path, *, editable: bool) -> Path:
    """A wheel of the running gitml: its package (or, ``editable``, a ``.pth`` naming its
    source tree), its schemas, and its metadata with the running version."""
    dist = _metadata()
    metadata = dist.read_text("METADATA") if dist is not None else None
    if metadata is None:
        metadata = "Metadata-Version: 2.1\nName: gitml\n"
    metadata = re.sub(r"(?m)^Version: .*\n", "", metadata)
    metadata = metadata.replace("Name: gitml\n", f"Name: gitml\nVersion: {__version__}\n", 1)
    entry_points = dist.read_text("entry_points.txt") if dist is not None else None
    writer = _WheelWriter(
        folder / f"gitml-{__version__}-py3-none-any.whl", f"gitml-{__version__}.dist-info"
    )
    root = package_dir()
    if editable:
        writer.add("_gitml_source.pth", f"{root.parent}\n".encode())
    else:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                writer.add(f"gitml/{path.relative_to(root).as_posix()}", path.read_bytes())
        if not (root / "_schemas").is_dir():  # a source tree: where gitml's own wheel has them
            for path in sorted(schema_dir().glob("*.json")):
                writer.add(f"gitml/_schemas/{path.name}", path.read_bytes())
    writer.add(f"{writer.info}/METADATA", metadata.encode())
    writer.add(
        f"{writer.info}/entry_points.txt",
        (entry_points or "[console_scripts]\ngitml = gitml.cli:main\n").encode(),
    )
    return writer.close()


def repacked_wheel(dist: importlib.metadata.Distribution, folder: Path) -> Path | None:
    """An installed distribution as a wheel again, from the files its RECORD lists;
    None when it has no RECORD (not installed from a wheel)."""
    files = dist.files
    if dist.read_text("RECORD") is None or files is None:
        return None
    info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if info is None:
        return None
    name, version = _wheel_name(dist.metadata["Name"]), dist.version
    writer = _WheelWriter(folder / f"{name}-{version}-py3-none-any.whl", info)
    for file in files:
        relative = PurePosixPath(file.as_posix())
        if relative.parts[0] == ".." or relative.suffix == ".pyc":
            continue  # scripts, rebuilt from entry_points.txt; bytecode, rebuilt on import
        if relative.parent == PurePosixPath(info) and relative.name in _INSTALLER_FILES:
            continue
        source = Path(str(file.locate()))
        if source.is_file():  # RECORD may name a file removed since
            writer.add(str(relative), source.read_bytes())
    return writer.close()


def docker_mounts() -> list[tuple[Path, str]]:
    """Host folders and where they go in a container, so its Python imports this gitml
    from ``DOCKER_LIB`` (the schemas sit beside the package in a source checkout)."""
    mounts = [(package_dir(), f"{DOCKER_LIB}/gitml")]
    if is_source_checkout():
        mounts.append((schema_dir().resolve(), f"{DOCKER_LIB}/schemas"))
    return mounts
