#!/usr/bin/env bash
# Interleaved A/B of engine settings through HTTP on the CPU: for each round, for each variant,
# start a fresh `z2v serve engine`, run `z2v bench` at concurrency 16 (REQUESTS requests, default 16;
# 128-word prompts, 64 output tokens), print the result line, stop the server. `z2v compare` sends
# 64 requests: REQUESTS=64 measures the steady state where requests start and end at different steps.
#
#   bash benchmarks/engine_cpu_ab.sh 3 "OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=0" ""
#   bash benchmarks/engine_cpu_ab.sh 3 "--max-num-batched-tokens 1024" "--max-num-batched-tokens 2048"
#
# A variant is a list of KEY=VALUE environment settings and `z2v serve engine` flags ("" = defaults).
# Runs alternate, so a drift in the machine's load hits every variant alike. Needs the test venv
# (bash scripts/test.sh) and the SmolLM2 cache ($ZERO2VLLM_MODEL_CACHE, default .devcache/models).
set -u
cd "$(dirname "$0")/.."
rounds=${1:?usage: engine_cpu_ab.sh ROUNDS VARIANT...}; shift
export ZERO2VLLM_MODEL_CACHE=${ZERO2VLLM_MODEL_CACHE:-$PWD/.devcache/models}
export ZERO2VLLM_HOME=${ZERO2VLLM_HOME:-$(mktemp -d)}
port=${PORT:-8140}
requests=${REQUESTS:-16}
for r in $(seq "$rounds"); do
  for variant in "$@"; do
    envs=(); args=()
    for word in $variant; do
      if [[ $word == --* || ${#args[@]} -gt 0 ]]; then args+=("$word"); else envs+=("$word"); fi
    done
    env "${envs[@]}" .venv/bin/z2v serve engine --port "$port" "${args[@]}" > "$ZERO2VLLM_HOME/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 120); do curl -sf "localhost:$port/health" > /dev/null && break; sleep 0.5; done
    result=$(.venv/bin/z2v bench "http://127.0.0.1:$port" --api openai --concurrency 16 --requests "$requests" \
             --output-len 64 2>&1 | grep 'concurrency 16:' | sed 's/.*ok in //')
    echo "round $r [${variant:-defaults}] | $result | load $(cut -d' ' -f1 /proc/loadavg)"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null
  done
done
