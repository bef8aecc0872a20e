#!/usr/bin/env bash
# The original entry's best settings (baseline.yaml), all 4 folds:  DATA_DIR=D NAME=n bash experiments/baseline.sh
exec "$(dirname "$0")/launch.sh" train.py experiments/baseline.yaml "$@"
