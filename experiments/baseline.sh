#!/usr/bin/env bash
# The 4th-place entry's best settings (SPEC 3): tf_efficientnet_b3_ns at 384x288, GeM + ArcFace (s=45, m=0.5)
# with focal loss (gamma 5, alpha 0.25) and class weights, SGD Nesterov lr 2e-3 with cosine (T_max 70),
# age filter 59, the original augmentation, 4 person-level folds, early stopping on val_loss (patience 5).
# All of these are the defaults in src/config.py; this script only names the run and the data.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
NAME=${NAME:-baseline_b3}
exec .venv/bin/python train.py --data_dir "$DATA_DIR" --name "$NAME" --fold all --cache disk "$@"
