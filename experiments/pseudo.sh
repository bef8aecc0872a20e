#!/usr/bin/env bash
# A pseudo-labelling round on top of a finished run RUN: eval images labelled by RUN's fold ensemble with
# flip TTA (all kept, as the original did; raise --pseudo_threshold to filter), then the baseline recipe
# retrained on train + pseudo. This is test-set leakage: allowed by the competition, but say so.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
RUN=${RUN:?set RUN to the finished run that makes the pseudo labels}
NAME=${NAME:-${RUN}_pseudo}
exec .venv/bin/python pseudo_train.py --data_dir "$DATA_DIR" --run "$RUN" --name "$NAME" --fold all \
  --cache disk --pseudo_threshold 0 "$@"
