"""Train a small classifier and log it with gitml, as you would with MLflow.

Run it inside any Git repository: the run is stored on refs/gitml/runs/<id>,
its first commit has your code commit as its parent.
"""

from __future__ import annotations

import argparse

import gitml
import gitml.sklearn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=200)
    args = parser.parse_args()

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)

    gitml.set_experiment("iris")
    with gitml.start_run(run_name="logreg") as run:
        gitml.log_params({"C": args.C, "max_iter": args.max_iter})
        gitml.set_tag("model", "LogisticRegression")
        model = LogisticRegression(C=args.C, max_iter=1, warm_start=True)
        for step in range(args.max_iter // 10):
            model.max_iter = (step + 1) * 10
            model.fit(x_train, y_train)
            gitml.log_metric(
                "train_loss", log_loss(y_train, model.predict_proba(x_train)), step=step
            )
        accuracy = accuracy_score(y_test, model.predict(x_test))
        gitml.log_metric("accuracy", accuracy)
        gitml.log_dict({"classes": [int(c) for c in model.classes_]}, "labels.json")
        # MLflow's model format; the signature is inferred from the example.
        gitml.sklearn.log_model(model, "model", input_example=x_test[:3])
        print(f"run {run.run_id}: accuracy {accuracy:.3f}")


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")  # sklearn's convergence warnings for the warm-start loop
    main()
