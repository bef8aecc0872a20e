#!/usr/bin/env bash
# One node's share of a run trained across machines with DDP (torchrun, c10d rendezvous; src/engine/launch.py). Start
# it on every node with the same NNODES, MASTER_ADDR (a node every other reaches), MASTER_PORT, NAME and LOG_DIR (storage
# every node sees); GPUS is per node, NODE_RANK optional. MAX_RESTARTS=N restarts the group after a worker dies
# (resuming from each fold's last.pt); JOIN_TIMEOUT (60 s) bounds the wait for the other nodes.
#   NNODES=2 MASTER_ADDR=10.0.0.1 GPUS=8 LOG_DIR=/shared/logs bash experiments/multinode.sh experiments/baseline.yaml --fold 0
NNODES=${NNODES:?set NNODES to the number of machines} exec "$(dirname "$0")/launch.sh" train.py "$@"
