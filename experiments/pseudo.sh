#!/usr/bin/env bash
# A pseudo-labelling round (pseudo.yaml) taught by the finished run RUN:  RUN=r bash experiments/pseudo.sh
exec "$(dirname "$0")/launch.sh" pseudo_train.py experiments/pseudo.yaml "$@"
