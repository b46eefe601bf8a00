"""Experiment tracking: the Client, the fluent API and what they store."""
