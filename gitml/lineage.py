"""``gitml.lineage``: where scripts written against earlier releases import lineage from.

The code lives in ``gitml.registry.lineage`` (the walk) and
``gitml.registry.lineage_render`` (the Markdown); these are the two functions
that path documented.
"""

from gitml.registry.lineage import lineage
from gitml.registry.lineage_render import describe_stage_change

__all__ = ["describe_stage_change", "lineage"]
