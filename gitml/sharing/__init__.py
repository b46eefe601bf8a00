"""Sharing through a Git remote: push and pull of gitml's refs, and renumbering versions.

Above the format (it validates and rewrites records), below the faces; the
`git` binary and the object store it uses live in ``gitml.git``.
"""
