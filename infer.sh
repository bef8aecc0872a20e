#!/usr/bin/env bash
# Predict eval with RUN (default: the newest run in logs/) and write logs/RUN/submission.csv.
exec "$(dirname "$0")/experiments/launch.sh" infer.py "$@"
