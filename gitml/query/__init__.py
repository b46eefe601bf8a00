"""Finding runs: the derived SQLite index and MLflow's filter grammar compiled to SQL."""
