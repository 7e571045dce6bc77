#!/bin/bash
# The engine server's serving speed before and after a change: OLD (a commit) against this tree,
# alternating twice, on the tiny random model with one torch thread (server overhead shows most).
#   bash benchmarks/engine_server_ab.sh 96d83ec
set -e
OLD=${1:?give the commit to compare against}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
TMP=$(mktemp -d)
git -C "$REPO" archive "$OLD" src | tar -x -C "$TMP"
M=$(PYTHONPATH=$REPO/src $PY -c "from zero2vllm.models import ensure_tiny_model_dir as e; print(e())")
MOD_OLD=zero2vllm.engine.server
[ -f "$TMP/src/zero2vllm/engine/api_server.py" ] && MOD_OLD=zero2vllm.engine.api_server
for round in 1 2; do
  for side in old new; do
    if [ $side = old ]; then SRC=$TMP/src; MOD=$MOD_OLD; else SRC=$REPO/src; MOD=zero2vllm.engine.api_server; fi
    PYTHONPATH=$SRC $PY -m $MOD --model "$M" --port 8093 --threads 1 --max-model-len 256 --num-kv-blocks 256 \
      >/dev/null 2>&1 &
    PID=$!
    for _ in $(seq 60); do curl -s 127.0.0.1:8093/health >/dev/null && break; sleep 1; done
    PYTHONPATH=$REPO/src $PY -m zero2vllm bench http://127.0.0.1:8093 --api openai --concurrency 16 --requests 96 \
      --input-len 64 --output-len 64 --prompt-format ids --metrics-url none 2>&1 | grep "concurrency 16:" \
      | sed "s/^/$side round $round: /"
    kill $PID; wait $PID 2>/dev/null || true
  done
done
rm -rf "$TMP"
