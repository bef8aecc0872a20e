#!/usr/bin/env bash
# Predict eval with RUN (default: the most recently modified run in logs/) and write logs/RUN/submission.csv.
set -euo pipefail
cd "$(dirname "$0")"
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
if [ -z "${RUN:-}" ]; then
  RUN=$(ls -t logs/*/config.yaml 2>/dev/null | head -n 1 | xargs -r dirname | xargs -r basename)
  [ -n "$RUN" ] || { echo "error: no run in logs/; set RUN=name" >&2; exit 2; }
fi
exec .venv/bin/python infer.py --data_dir "$DATA_DIR" --run "$RUN" "$@"
