"""The model registry.

Versions, stages and their declarations, the promotion policy, lineage,
validation, hooks.
"""
