#!/usr/bin/env bash
# The 15-CPU-minute recipe (cpu15.yaml): every fold, then `python infer.py --run cpu15` for the submission.
exec "$(dirname "$0")/launch.sh" train.py experiments/cpu15.yaml "$@"
