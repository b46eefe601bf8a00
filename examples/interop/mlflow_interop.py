"""Models cross both ways between gitml and MLflow (scikit-learn flavor).

Run with a Python that has both packages installed, in an empty folder:

    pip install mlflow -e /path/to/gitml && python /path/to/examples/interop/mlflow_interop.py

It saves an iris LogisticRegression with MLflow and loads it with gitml, then
the other way round, and prints whether every prediction matches.
"""

from __future__ import annotations

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import gitml.models.pyfunc as gitml_pyfunc
import gitml.models.sklearn as gitml_sklearn


def same(predictions: object, expected: np.ndarray) -> bool:
    return bool(np.array_equal(np.asarray(predictions), expected))


def main() -> None:
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    expected = model.predict(x)

    signature = infer_signature(x, expected)
    mlflow.sklearn.save_model(model, "by_mlflow", signature=signature, input_example=x.head(3))
    loaded = gitml_pyfunc.load_model("by_mlflow")
    print("gitml pyfunc reads MLflow's model:", same(loaded.predict(x), expected))
    print("  with its signature:", loaded.metadata.signature is not None)
    ours = gitml_sklearn.load_model("by_mlflow")
    print("gitml sklearn reads it:", same(ours.predict(x), expected))

    gitml_sklearn.save_model(model, "by_gitml", input_example=x.head(3))
    theirs = mlflow.pyfunc.load_model("by_gitml")
    print("MLflow pyfunc reads gitml's model:", same(theirs.predict(x), expected))
    estimator = mlflow.sklearn.load_model("by_gitml")
    print("MLflow sklearn reads it:", same(estimator.predict(x), expected))
    print("MLflow sees its signature:", theirs.metadata.signature is not None)


if __name__ == "__main__":
    main()
