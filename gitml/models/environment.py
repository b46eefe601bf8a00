"""The environment files MLflow writes beside ``MLmodel``.

``requirements.txt`` pins the versions actually installed of what the flavor
needs, ``python_env.yaml`` names the Python version and points at it, and
``conda.yaml`` says the same for conda users. Versions come from
``importlib.metadata``: no ``pip freeze`` subprocess, so saving stays fast.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from gitml.format import yamlio

REQUIREMENTS = "requirements.txt"
PYTHON_ENV = "python_env.yaml"
CONDA_ENV = "conda.yaml"


def installed(distribution: str) -> str | None:
    """The installed version without its local label (``2.13.0+cpu`` is ``2.13.0``).

    A local label names a build (CPU, CUDA) that PyPI does not serve, so a
    requirement pinned with it cannot be installed elsewhere; MLflow drops it too.
    """
    try:
        return metadata.version(distribution).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return None


def pinned(distributions: Iterable[str]) -> list[str]:
    """``name==version`` for each installed distribution, bare name for the others."""
    lines = []
    for name in dict.fromkeys(distributions):
        version = installed(name)
        lines.append(f"{name}=={version}" if version else name)
    return lines


def write(path: Path, distributions: Iterable[str], extra: Iterable[str] = ()) -> dict[str, str]:
    """Write the three files into ``path``; returns the ``env`` mapping of python_function."""
    requirements = [*pinned(["gitml", *distributions]), *extra]
    (path / REQUIREMENTS).write_text("\n".join(requirements) + "\n")
    python = platform.python_version()
    build = pinned(["pip", "setuptools", "wheel"])
    (path / PYTHON_ENV).write_bytes(
        yamlio.dump(
            {
                "python": python,
                "build_dependencies": build,
                "dependencies": [f"-r {REQUIREMENTS}"],
            }
        )
    )
    pip = installed("pip")
    (path / CONDA_ENV).write_bytes(
        yamlio.dump(
            {
                "channels": ["conda-forge"],
                "dependencies": [
                    f"python={python}",
                    f"pip<={pip}" if pip else "pip",
                    {"pip": requirements},
                ],
                "name": "mlflow-env",
            }
        )
    )
    return {"conda": CONDA_ENV, "virtualenv": PYTHON_ENV}
