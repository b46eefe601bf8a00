"""MLflow's side of gitml: its REST API, its tracking-URI plugins and its stores' import.

MLflow is an optional extra (``gitml[mlflow]``): only ``plugin`` imports it at
the top (MLflow loads that module itself), ``importer`` inside its functions.
``api`` translates MLflow's JSON without it, and ``gitml.server.mlflow_routes``
serves that over HTTP, so ``gitml server`` speaks MLflow's API where MLflow is
not installed.
"""
