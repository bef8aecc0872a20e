#!/usr/bin/env bash
# GPU benchmark for a lent H200 (no internet there; its image has torch, timm, opencv, pandas, scikit-learn).
#   1. here, once:            bash bench/gpu.sh --fetch-wheels   (albumentations and its small deps into .whl/)
#   2. on the device machine: bash bench/gpu.sh                  (carry .whl along)
# Setup measured: tf_efficientnet_b3_ns at 384x288, bf16 autocast, channels_last, batch 64,
# 0, 8 and 16 loader workers, cache off and on, on 200 generated people at 384x512 (1,400 images).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
        typing-inspection==0.4.5 typing_extensions==4.16.0 simsimd==6.5.16 stringzilla==5.3.2 pyyaml==6.0.4
        tqdm==4.70.1)
if [ "${1:-}" = "--fetch-wheels" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  for w in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$w"
  done
  ls .whl
  exit 0
fi
if ! python3 -c "import albumentations" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, timm, albumentations; print('torch', torch.__version__, 'timm', timm.__version__, 'albumentations', albumentations.__version__)"
DATA=/tmp/maskcls_gpu_data
[ -f "$DATA/train/train.csv" ] || python3 -m tools.make_synthetic_data --out "$DATA" --train_people 200 --eval_people 1 --seed 0
PYTHONUNBUFFERED=1 python3 -m bench.throughput --data_dir "$DATA" --model tf_efficientnet_b3_ns \
  --img_height 384 --img_width 288 --batch_size 64 --amp bf16 --channels_last true --aug original \
  --workers 0 8 16 "$@"
