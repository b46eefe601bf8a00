"""Serving models: the scoring protocol, the scoring app, the reconciler and its app."""
