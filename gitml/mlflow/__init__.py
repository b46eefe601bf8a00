"""MLflow's REST API and tracking-URI plugins, translated onto gitml's records."""
