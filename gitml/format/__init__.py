"""What is stored and where.

Records and their schemas, canonical YAML, the validated-record cache, the
layout of refs, paths and trailers (``layout``) and the typed readers of each
record from its ref (``readers``).
"""
