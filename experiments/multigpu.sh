#!/usr/bin/env bash
# One fold on several GPUs with DDP through torchrun: GPUS processes on this machine, batch_size per process.
# Several machines: add --nnodes N --node_rank R --master_addr HOST --master_port PORT to torchrun.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-/opt/ml/input/data}
NAME=${NAME:-b3_ddp}
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
exec .venv/bin/torchrun --standalone --nproc_per_node="${GPUS:-1}" train.py --data_dir "$DATA_DIR" --name "$NAME" \
  --fold "${FOLD:-0}" --cache disk "$@"
