"""``gitml.pyfunc``, ``gitml.sklearn`` and ``gitml.pytorch`` import as modules, and cheaply."""

from __future__ import annotations

import json
import subprocess
import sys


def test_flavor_modules_import_without_numpy_pandas_sklearn_or_torch() -> None:
    code = (
        "import json, sys, gitml.pyfunc, gitml.sklearn, gitml.pytorch, gitml.models; "
        "assert callable(gitml.pyfunc.load_model) and callable(gitml.sklearn.log_model); "
        "assert callable(gitml.pytorch.log_model); "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('numpy', 'pandas', 'sklearn', 'torch'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
