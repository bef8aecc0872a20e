#!/usr/bin/env bash
# One pseudo-labelling round taught by RUN, training NAME (default RUN_pseudo) with RUN's own settings.
NAME=${NAME:-${RUN:?set RUN to the finished run that makes the pseudo labels}_pseudo} \
  exec "$(dirname "$0")/experiments/launch.sh" pseudo_train.py "${LOG_DIR:-logs}/$RUN/config.yaml" "$@"
