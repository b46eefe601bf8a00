"""``gitml.lineage``: where scripts written against earlier releases import lineage from.

The code lives in ``gitml.registry.lineage``; these are the two functions
that path documented.
"""

from gitml.registry.lineage import describe_stage_change, lineage

__all__ = ["describe_stage_change", "lineage"]
