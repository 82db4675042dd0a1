#!/usr/bin/env bash
# The GPU check of issue 15 in one command, under 8 minutes on one H200:
#   benchmarks/gpu_check.sh [RESULTS_DIR]      (default: $OUT, else benchmarks/results/DATE)
# 1. bench_loss.py at N=16384, V=151936, Hs=896, Ht=1536, bf16: dense, fused (chunk sweep),
#    fused-compile, Liger, TRL;  2. bench_step.py: Qwen2-shaped 1.5B -> 0.5B, 8 x 1024 tokens,
#    finetune / live / store, eager and compiled;  3. the tests marked gpu.
# Installs only benchmarks/gpu_requirements.txt, from .whl/ (benchmarks/gpu_wheels.sh), and
# only when .whl/ exists. Each part has its own time limit; a part that runs out leaves the
# others' results. Writes env.txt, loss.txt/json, step.txt/json and tests.txt.
# GPU_CHECK_TINY=1 runs the same script on a CPU at tiny sizes (a dry run of the script).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-benchmarks/results/$(date -u +%Y%m%dT%H%M%SZ)}}"
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/distil-site \
        .whl/*.whl >"$RESULTS/env.txt" 2>&1 || echo "wheel install failed" >>"$RESULTS/env.txt"
    export PYTHONPATH="$PWD/src:/tmp/distil-site"
else
    export PYTHONPATH="$PWD/src"
fi
{
    date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    git log -1 --format='commit %H %cd' 2>/dev/null
    "$PY" - <<'PYEOF'
import importlib.metadata as m, torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
for name in ("transformers", "accelerate", "triton", "liger-kernel", "trl"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "not installed")
PYEOF
} >>"$RESULTS/env.txt" 2>&1
if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then
    LOSS=(--device cpu --dtype fp32 --tokens 64 --vocab 1000 --student-hidden 16
          --teacher-hidden 24 --chunk-sizes 0,16 --paths dense,fused,liger,trl --threads 1)
    STEP=(--device cpu --tiny --variants finetune,live,store)
else
    LOSS=(--device cuda --dtype bf16 --tokens 16384 --vocab 151936 --student-hidden 896
          --teacher-hidden 1536 --chunk-sizes 0,256,512)
    STEP=(--device cuda)
fi
timeout 150 "$PY" benchmarks/bench_loss.py "${LOSS[@]}" --warmup 1 --repeat 5 \
    --json "$RESULTS/loss.json" >"$RESULTS/loss.txt" 2>&1
echo "exit $?" >>"$RESULTS/loss.txt"
timeout 230 "$PY" benchmarks/bench_step.py "${STEP[@]}" --warmup 2 --steps 5 \
    --json "$RESULTS/step.json" >"$RESULTS/step.txt" 2>&1
echo "exit $?" >>"$RESULTS/step.txt"
timeout 90 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/losses/test_fused_cuda.py \
    tests/test_train_gpu.py >"$RESULTS/tests.txt" 2>&1
echo "exit $?" >>"$RESULTS/tests.txt"
tail -n 30 "$RESULTS"/loss.txt "$RESULTS"/step.txt "$RESULTS"/tests.txt
