"""MLflow Projects in gitml: run an ``MLproject`` (a folder or a Git URL) as a run.

``run`` runs an entry point as a new run; ``plan`` resolves one without
running anything (``gitml run --dry-run``); ``reproduce`` runs a recorded run
again with its exact code, entry point and parameters.
"""

from __future__ import annotations

from gitml.projects.environments import EnvironmentUnavailable
from gitml.projects.run import Plan, ProjectRun, plan, reproduce, run
from gitml.projects.spec import MLproject, Project, load_project

__all__ = [
    "EnvironmentUnavailable",
    "MLproject",
    "Plan",
    "Project",
    "ProjectRun",
    "load_project",
    "plan",
    "reproduce",
    "run",
]
