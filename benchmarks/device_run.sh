#!/usr/bin/env bash
# One batched run on a lent GPU (the device tool): environment, then the GPU benchmarks, each
# with its own time limit, logs under $OUT. Usage: bash benchmarks/device_run.sh PART...
# Parts: env transformer engine engine-nocheck engine-http breakdown profile kernel mixed mixed-engine naive hfbase hfstatic
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
for part in "$@"; do
    echo "=== $part $(date +%T)"
    case $part in
    env) nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
         python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)"
         python3 -c "import flask, psutil; print('flask', flask.__version__, 'psutil', psutil.__version__)" ;;
    transformer) timeout 300 python3 benchmarks/transformer_train.py --device cuda --target 1.47 --baseline \
                     --json "$OUT/transformer.json" 2>&1 | tee "$OUT/transformer.log" | grep -v "^step" | tail -40 ;;
    engine) timeout 240 python3 benchmarks/engine_gpu.py --device cuda 2>&1 | tee "$OUT/engine.log" | tail -40 ;;
    engine-nocheck) timeout 200 python3 benchmarks/engine_gpu.py --device cuda --no-check 2>&1 | tee "$OUT/engine.log" | tail -40 ;;
    mixed) timeout 420 python3 benchmarks/engine_mixed.py --device cuda --json "$OUT/mixed.json" 2>&1 | tee "$OUT/mixed.log" | grep -v Warn | tail -12 ;;
    mixed-engine) timeout 200 python3 benchmarks/engine_mixed.py --device cuda --no-hf 2>&1 | tee "$OUT/mixed.log" | grep -v Warn | tail -8 ;;
    engine-http) timeout 240 python3 benchmarks/engine_gpu.py --device cuda --http --no-check 2>&1 | tee "$OUT/engine_http.log" | tail -40 ;;
    naive) timeout 400 python3 benchmarks/naive_api_gpu.py --device cuda --out "$OUT/naive.json" 2>&1 | tee "$OUT/naive.log" | tail -40 ;;
    profile) timeout 300 python3 benchmarks/engine_step_profile.py --device cuda 2>&1 | tee "$OUT/profile.log" | grep -v Warn | head -40 ;;
    kernel) timeout 200 python3 benchmarks/triton_decode_bench.py $( [ -f build/old_triton_attention.py ] && echo --baseline build/old_triton_attention.py ) 2>&1 | tee "$OUT/kernel.log" | tail -20 ;;
    breakdown) timeout 240 python3 benchmarks/engine_gpu_breakdown.py --device cuda 2>&1 | tee "$OUT/breakdown.log" | tail -45 ;;
    hfstatic) timeout 400 python3 benchmarks/hf_static_baseline.py 2>&1 | tee "$OUT/hf_static.log" | grep -v Warning | tail -6 ;;
    hfbase) timeout 200 python3 benchmarks/hf_naive_baseline.py 2>&1 | tee "$OUT/hf_baseline.log" | tail -12 ;;
    esac
done
echo "=== end $(date +%T)"
