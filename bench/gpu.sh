#!/usr/bin/env bash
# The GPU check for a lent H200, one script within 8 minutes (no internet there; its image has Python 3.12 with
# torch, timm, opencv, pandas, scikit-learn and onnxruntime, and bench/wheels.py's wheels bring the rest):
#   1. the CUDA tests, tests/test_cuda.py (AMP bf16 and fp16, channels_last, pinned batches, torch.compile, torchrun
#      over NCCL, a killed and resumed two-fold baseline run, infer, predict and export against the CPU engine)
#   2. the fed rate: tf_efficientnet_b3_ns at 384x288, bf16, channels_last, batch 64, original augmentation, the
#      real loader with 14 (a 16-core server's), 8 and 0 workers, cache off and on, on 200 generated people (1,400
#      images at 384x512), 2 rounds of 1 window of 2 steps; then each against the model-only step and their ratio,
#      flagged under 0.9 (data-bound); the last line is the ratio at 14 workers with the cache
#   3. the feed on this machine's CPU: python -m bench.feed --quick (each step's ms, loader, fixed cost of an epoch)
#   4. one epoch (fold 0) of experiments/baseline.yaml on the same people at full size: images/s and wall time
# Each step has a time limit (TESTS_S 240, BENCH_S 170, FEED_S 120, EPOCH_S 80 seconds) and the next runs whatever
# it did. Everything goes under $OUT (a new temp folder when unset): gpu.log (all of it), cuda_tests.xml,
# throughput.md, feed.md and epoch/ (the run's logs and records); the data, the wheels' site, the image cache and
# checkpoints are removed.
#   bash bench/gpu.sh --fetch-wheels   once, where there is internet: the wheels into .whl/ (carry it along)
#   bash bench/gpu.sh                  on the GPU machine; extra arguments go to bench.throughput
#   bash bench/gpu.sh --dry-run        the same steps on the CPU at a tiny size, in a few minutes
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if [ "${1:-}" = "--fetch-wheels" ]; then exec "$PY" -m bench.wheels fetch --dest .whl; fi
DRY=false
if [ "${1:-}" = "--dry-run" ]; then DRY=true; shift; fi
OUT=${OUT:-$(mktemp -d -t maskcls-gpu.XXXXXX)}
probe=$OUT/.maskcls-write-check.$$  # before anything runs: a folder that cannot take gpu.log is one line, not minutes
if ! { mkdir -p "$OUT" && : > "$probe" && rm -f "$probe"; } 2>/dev/null; then
  echo "error: OUT=$OUT is not a folder that can be written; set OUT to a writable folder (or leave it unset)" >&2
  exit 2
fi
OUT=$(cd "$OUT" && pwd)
SCRATCH=$OUT/scratch DATA=$OUT/scratch/data
exec > >(tee -a "$OUT/gpu.log") 2>&1
log_pid=$!
trap 'rm -rf "$SCRATCH" "$OUT/epoch/cache"; find "$OUT/epoch" -name "*.pt" -delete 2>/dev/null
      exec >&- 2>&-; wait "$log_pid" 2>/dev/null || true' EXIT
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}
if $DRY; then  # the same steps at a tiny size: seconds each on 2 CPU cores
  PEOPLE=12 SIZE=96x128
  MODEL=(--model test_efficientnet --img_height 64 --img_width 48 --batch_size 8)
  BENCH=(--workers 1 0) FEED=(--sizes 64x48 --photos 8 --fog_photos 4 --batches 2 --workers 0 --skip fixed)
  EPOCH=(--num_workers 1 --infer_batch_size 16)
else
  PEOPLE=200 SIZE=384x512
  MODEL=(--model tf_efficientnet_b3_ns --img_height 384 --img_width 288 --batch_size 64)
  BENCH=(--workers 14 8 0) FEED=(--quick) EPOCH=()
fi
"$PY" -m bench.wheels install --dest .whl --target "$SCRATCH/site"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } \
  || echo "no nvidia-smi: no GPU here"
"$PY" -c "import sys, torch, timm, albumentations; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.cuda.is_available(), 'timm', timm.__version__, 'albumentations', albumentations.__version__)"
"$PY" -m tools.make_synthetic_data --out "$DATA" --train_people "$PEOPLE" --eval_people 1 --seed 0 --size "$SIZE"

summary=() failed=0
step() {  # step NAME SECONDS FILE COMMAND...: run it with a time limit (its stdout also into FILE), note its exit
  local name=$1 limit=$2 file=$3 start=$SECONDS rc=0  # status and wall time, and go on
  shift 3
  echo -e "\n== $name (at most $limit s)"
  timeout -k 10 "$limit" "$@" | tee "$file" || rc=$?
  summary+=("$name: exit $rc, $((SECONDS - start)) s")
  [ "$rc" = 0 ] || failed=1
}
step "CUDA tests" "${TESTS_S:-240}" /dev/null "$PY" -m pytest -m cuda tests/test_cuda.py -v -rs \
  --basetemp "$SCRATCH/pytest" --junitxml "$OUT/cuda_tests.xml"
step "throughput" "${BENCH_S:-170}" "$OUT/throughput.md" "$PY" -m bench.throughput --data_dir "$DATA" "${MODEL[@]}" \
  --amp bf16 --channels_last true --aug original --rounds 2 --windows 1 --steps 2 --flag_below 0.9 "${BENCH[@]}" "$@"
step "feed (CPU)" "${FEED_S:-120}" "$OUT/feed.md" "$PY" -m bench.feed --data_dir "$DATA" "${FEED[@]}"
step "one epoch of baseline.yaml" "${EPOCH_S:-80}" /dev/null "$PY" -m bench.epoch --config experiments/baseline.yaml \
  --data_dir "$DATA" --log_dir "$OUT/epoch" --name baseline --pretrained false "${MODEL[@]}" "${EPOCH[@]}"
echo -e "\n== summary ($($DRY && echo "dry run on the CPU" || echo GPU)); everything is in $OUT"
printf '  %s\n' "${summary[@]}"
exit $failed
