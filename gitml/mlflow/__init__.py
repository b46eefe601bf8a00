"""MLflow's side of gitml: translating MLflow's stores, API and URIs onto gitml's records.

MLflow is an optional extra (``gitml[mlflow]``): modules here import it
inside their functions, so ``import gitml`` never does.
"""
