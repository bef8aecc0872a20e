#!/usr/bin/env bash
# The one launcher behind every workflow script:  launch.sh ENTRY [RECIPE.yaml] [--key value ...]
#   ENTRY    train.py, infer.py or pseudo_train.py
#   RECIPE   a recipe file (experiments/<recipe>.yaml), applied before the extra arguments (which win)
# Environment: PYTHON (default .venv/bin/python when present, else python on PATH), DATA_DIR (default
# /opt/ml/input/data), LOG_DIR (default logs, in the repository), NAME (a new run; default the recipe's name),
# RUN (the run to predict with; infer.py defaults to the newest run), GPUS (>1: one torchrun process per GPU), NNODES
# (>1: several machines, see experiments/multinode.sh); torchrun then starts through src/engine/launch.py.
# Relative DATA_DIR, LOG_DIR, RECIPE and --config paths are the caller's: they are resolved before the launcher
# changes into the repository (a RECIPE that is not there is looked up in the repository).
set -euo pipefail
case ${GPUS:-1} in
  *[!0-9]*) echo "error: GPUS must be a whole number of GPUs (1 or more), got '${GPUS}'" >&2; exit 2 ;;
esac
case ${NNODES:-1} in
  *[!0-9]*) echo "error: NNODES must be a whole number of machines (1 or more), got '${NNODES}'" >&2; exit 2 ;;
esac
caller=$PWD
repo=$(cd "$(dirname "$0")/.." && pwd)
from_caller() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s' "$caller/$1" ;; esac; }
data_dir=$(from_caller "${DATA_DIR:-/opt/ml/input/data}")
log_dir=$([ -n "${LOG_DIR:-}" ] && from_caller "$LOG_DIR" || printf '%s' logs)
cd "$repo"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
entry=$1; shift
args=(--data_dir "$data_dir" --log_dir "$log_dir")
if [ $# -gt 0 ] && [[ $1 == *.yaml ]]; then
  recipe=$1; shift
  [ -f "$(from_caller "$recipe")" ] && recipe=$(from_caller "$recipe")
  args=(--config "$recipe" "${args[@]}")
  [ "$entry" = infer.py ] || args+=(--name "${NAME:-$(basename "$recipe" .yaml)}")
elif [ "$entry" != infer.py ]; then
  args+=(--name "${NAME:?set NAME to the run to create}")
fi
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --config) extra+=("$1" "$(from_caller "${2:?--config needs a file}")"); shift 2 ;;
    --config=*) extra+=("--config=$(from_caller "${1#--config=}")"); shift ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [ "$entry" = infer.py ] && [ -z "${RUN:-}" ]; then RUN=$("$PY" -m src.run.rundir latest "$log_dir"); fi
[ "$entry" = train.py ] || [ -z "${RUN:-}" ] || args+=(--run "$RUN")
if [ "${GPUS:-1}" -gt 1 ] || [ "${NNODES:-1}" -gt 1 ]; then
  exec "$PY" -m src.engine.launch "$entry" "${args[@]}" "${extra[@]}"
fi
exec "$PY" "$entry" "${args[@]}" "${extra[@]}"
