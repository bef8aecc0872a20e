#!/usr/bin/env bash
# The one launcher behind every workflow script:  launch.sh ENTRY [RECIPE.yaml] [--key value ...]
#   ENTRY    train.py, infer.py or pseudo_train.py
#   RECIPE   experiments/<recipe>.yaml, applied before the extra arguments (which win)
# Environment: PYTHON (default .venv/bin/python when present, else python on PATH), DATA_DIR (default
# /opt/ml/input/data), LOG_DIR (default logs), NAME (a new run; default the recipe's name), RUN (the run to
# predict with; infer.py defaults to the newest run), GPUS (>1: one torchrun process per GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
entry=$1; shift
args=(--data_dir "${DATA_DIR:-/opt/ml/input/data}" --log_dir "${LOG_DIR:-logs}")
if [ $# -gt 0 ] && [[ $1 == *.yaml ]]; then
  recipe=$1; shift
  args=(--config "$recipe" "${args[@]}")
  [ "$entry" = infer.py ] || args+=(--name "${NAME:-$(basename "$recipe" .yaml)}")
elif [ "$entry" != infer.py ]; then
  args+=(--name "${NAME:?set NAME to the run to create}")
fi
if [ "$entry" = infer.py ] && [ -z "${RUN:-}" ]; then RUN=$("$PY" -m src.run.rundir latest "${LOG_DIR:-logs}"); fi
[ "$entry" = train.py ] || [ -z "${RUN:-}" ] || args+=(--run "$RUN")
if [ "${GPUS:-1}" -gt 1 ]; then
  exec "$PY" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" "$entry" "${args[@]}" "$@"
fi
exec "$PY" "$entry" "${args[@]}" "$@"
