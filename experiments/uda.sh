#!/usr/bin/env bash
# UDA (arXiv 1904.12848): the baseline recipe plus 5.0 x KL(weak || strong) on unlabelled eval images.
# It did not help the original entry; kept as an option. Point --unlabeled_dir at any image folder.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
NAME=${NAME:-baseline_uda}
exec .venv/bin/python train.py --data_dir "$DATA_DIR" --name "$NAME" --fold all --cache disk \
  --uda true --uda_weight 5.0 --uda_ratio 1.0 "$@"
