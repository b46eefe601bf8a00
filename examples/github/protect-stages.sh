#!/usr/bin/env bash
# Apply production-ruleset.json to a GitHub repository and put CODEOWNERS on the
# gitml/production branch, where GitHub looks for it. Needs the GitHub CLI (gh),
# logged in with admin rights on the repository; run it in a clone whose
# origin is that repository, after the first promotion created gitml/production.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="${1:?usage: protect-stages.sh OWNER/REPO}"

# CODEOWNERS first, as a commit on gitml/production: once the ruleset is on,
# that branch changes only through a reviewed pull request.
git fetch origin gitml/production
tmp="$(mktemp -d)"
trap 'git worktree remove --force "$tmp"' EXIT
git worktree add --detach "$tmp" FETCH_HEAD
mkdir -p "$tmp/.github"
cp "$here/CODEOWNERS" "$tmp/.github/CODEOWNERS"
git -C "$tmp" add .github/CODEOWNERS
git -C "$tmp" commit -m "Code owners approve changes to what production serves"
git -C "$tmp" push origin HEAD:refs/heads/gitml/production
git worktree remove --force "$tmp"
trap - EXIT

gh api --method POST "repos/$repo/rulesets" --input "$here/production-ruleset.json"
