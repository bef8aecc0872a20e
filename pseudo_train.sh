#!/usr/bin/env bash
# One pseudo-labelling round from a named run: RUN predicts, NAME trains (same settings as RUN unless overridden).
set -euo pipefail
cd "$(dirname "$0")"
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
RUN=${RUN:?set RUN to the finished run that makes the pseudo labels}
NAME=${NAME:-${RUN}_pseudo}
exec .venv/bin/python pseudo_train.py --config "logs/$RUN/config.yaml" --data_dir "$DATA_DIR" --run "$RUN" \
  --name "$NAME" "$@"
