#!/usr/bin/env bash
# One fold on every GPU of this machine with DDP through torchrun (multigpu.yaml); GPUS=n to choose.
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)} exec "$(dirname "$0")/launch.sh" train.py experiments/multigpu.yaml "$@"
