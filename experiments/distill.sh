#!/usr/bin/env bash
# One model learnt from the finished run RUN (distill.yaml):  RUN=cpu15 NAME=cpu15_student bash experiments/distill.sh
exec "$(dirname "$0")/launch.sh" train.py experiments/distill.yaml --teacher "${RUN:?set RUN to the teacher run}" "$@"
