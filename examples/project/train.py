"""Train a logistic regression on scikit-learn's wine data set (no download).

Run it as a project, `gitml run examples/project -P C=0.5`, or directly,
`python train.py --C 0.5`; either way it logs to a gitml run (the one
`gitml run` created, named by GITML_RUN_ID).
"""

from __future__ import annotations

import argparse

from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import gitml
import gitml.sklearn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--test-size", type=float, default=0.25)
    args = parser.parse_args()

    # Arrays, not DataFrames: the example runs with what `pip install 'gitml[sklearn]'`
    # installs, which has no pandas.
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=args.test_size, random_state=0, stratify=y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=args.max_iter))
    with gitml.start_run() as run:
        model.fit(X_train, y_train)
        predicted = model.predict(X_test)
        gitml.log_metrics(
            {
                "accuracy": float(accuracy_score(y_test, predicted)),
                "f1_macro": float(f1_score(y_test, predicted, average="macro")),
            }
        )
        gitml.sklearn.log_model(model, "model", input_example=X_test[:3])
        print(f"run {run.run_id}: accuracy {accuracy_score(y_test, predicted):.3f}")


if __name__ == "__main__":
    main()
