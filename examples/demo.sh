#!/usr/bin/env bash
# The end-to-end demo: a fresh project, training runs logged with gitml, the
# model registered and promoted through the stages, served by the reconciler
# from what the production branch declares, and called.
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
echo "== register the model and promote it: staging, then production (commits on gitml/<stage>)"
gitml models register "runs:/$run_id/model" iris --description "iris classifier"
gitml stage assign iris 1 staging --message "first candidate"
gitml stage assign iris 1 production --message "validated on staging"
gitml stage show
gitml stage history production
echo "== gitml lineage models:/iris@production"
gitml lineage models:/iris@production
echo
echo "== gitml reconcile serves what gitml/production declares; call it"
port="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
gitml reconcile --stage production --port "$port" --interval 1s > reconcile.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
python - "$port" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(600):
    try:
        urllib.request.urlopen(base + "/health", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
body = json.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode()
request = urllib.request.Request(base + "/invocations", body, {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as answer:
    print(answer.headers["X-Gitml-Model-Version"], answer.read().decode())
PY
kill $server
echo
echo "== gitml run: an MLproject (examples/project) as a run, then reproduced"
cp -r "$here/project" project && git add project && git commit -q -m "Add the wine project"
gitml run project -P C=0.5 --env-manager local --dry-run
gitml run project -P C=0.5 --env-manager local --run-name project-run
project_run="$(gitml runs list --json | python -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["name"] == "project-run"][0])')"
gitml runs reproduce "$project_run" -P C=2.0
echo
echo "== the run is a Git ref whose history reaches the code commit"
git log --oneline "refs/gitml/runs/$run_id"
echo "Demo project left in $work"
