#!/usr/bin/env bash
# The baseline plus UDA's consistency loss on unlabelled images (uda.yaml).
exec "$(dirname "$0")/launch.sh" train.py experiments/uda.yaml "$@"
