#!/usr/bin/env bash
# The end-to-end demo: a fresh project, a training run logged with gitml, and
# the CLI showing it. Grows with each capability (register, promote, serve).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)/demo-project"
mkdir -p "$work"
cp "$here/quickstart/train.py" "$work/"
cd "$work"
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-gitml demo}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-demo@example.com}"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"

echo "== gitml init (creates the Git repository and .gitml.yaml)"
gitml init
git add -A && git commit -q -m "Add training script"

echo "== train and log a run"
python train.py --C 0.5
run_id="$(gitml runs list --json | python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"

python train.py --C 2.0
echo "== gitml runs list"
gitml runs list
echo "== gitml runs search (MLflow's filter syntax, plus OR)"
gitml runs search "metrics.accuracy > 0.9 and params.C = '0.5' OR params.C = '2.0'" \
  --order-by "metrics.accuracy DESC" --columns params.C,metrics.accuracy
echo "== gitml runs show ${run_id:0:12}"
gitml runs show "${run_id:0:12}"
echo "== gitml runs metric ${run_id:0:12} train_loss (first lines)"
gitml runs metric "${run_id:0:12}" train_loss | head -3
echo "== gitml artifacts list / get"
gitml artifacts list "$run_id"
gitml artifacts get "$run_id" labels.json --out -
echo
echo "== the run is a Git ref whose history reaches the code commit"
git log --oneline "refs/gitml/runs/$run_id"
echo "Demo project left in $work"
