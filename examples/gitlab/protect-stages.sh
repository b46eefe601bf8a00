#!/usr/bin/env bash
# GitLab: protect the stage branches so "promotion needs a review" is enforced by
# the host. Needs the GitLab CLI (glab), logged in as a maintainer; run it in a
# clone of the project (glab fills in :id). The same settings are under
# Settings > Repository > Protected branches and Settings > Merge requests >
# Merge request approvals.
set -euo pipefail

# gitml/production: nobody pushes to it, Maintainers merge into it, no force
# push; a protected branch cannot be deleted by push either.
# (code_owner_approval_required takes a CODEOWNERS file on the branch, Premium.)
glab api --method POST "projects/:id/protected_branches" \
  -f name=gitml/production \
  -F push_access_level=0 \
  -F merge_access_level=40 \
  -F allow_force_push=false \
  -F code_owner_approval_required=true

# gitml/staging: Developers may promote with 'gitml push' directly, never forced.
glab api --method POST "projects/:id/protected_branches" \
  -f name=gitml/staging \
  -F push_access_level=30 \
  -F merge_access_level=30 \
  -F allow_force_push=false

# One approval from someone other than the author for merge requests into
# gitml/production (approval rules are Premium; on Free, only the protection above).
production_id="$(glab api "projects/:id/protected_branches/gitml%2Fproduction" | jq .id)"
glab api --method POST "projects/:id/approval_rules" \
  -f name="gitml production" \
  -F approvals_required=1 \
  -F "protected_branch_ids[]=$production_id"
glab api --method PUT "projects/:id/approvals" \
  -F merge_requests_author_approval=false \
  -F reset_approvals_on_push=true
