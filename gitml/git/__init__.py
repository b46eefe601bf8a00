"""Talking to Git.

The object store and compare-and-swap refs (the only dulwich user), the git
binary, remotes.
"""
