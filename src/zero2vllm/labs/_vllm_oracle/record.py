"""Record real vLLM's answers to seeded traces, shipped for machines without the vLLM venv.

    python -m zero2vllm.labs._vllm_oracle.record [block-pool|scheduler ...]

Needs `z2v vllm install` (the pinned vLLM). Writes labs/<lab>/recorded_vllm.json.gz: per trace its
seed, a digest of the trace (so a changed generator is noticed) and vLLM's per-step results.
"""

from __future__ import annotations

import gzip
import json
import sys

from zero2vllm.labs import LABS_DIR
from zero2vllm.labs._vllm_oracle import replay, trace_digest
from zero2vllm.labs._vllm_oracle.traces import block_pool_trace, scheduler_trace

RECORDINGS = {
    "block-pool": (block_pool_trace, LABS_DIR / "block_pool" / "recorded_vllm.json.gz", range(300)),
    "scheduler": (scheduler_trace, LABS_DIR / "scheduler" / "recorded_vllm.json.gz", range(300)),
}


def record(kind: str) -> str:
    make, path, seeds = RECORDINGS[kind]
    traces = [make(s) for s in seeds]
    answer = replay(kind, traces, timeout=600)
    recs = [{"seed": t["seed"], "digest": trace_digest(t), "results": r}
            for t, r in zip(traces, answer["results"])]
    text = json.dumps({"vllm": answer["vllm"], "kind": kind, "traces": recs}, separators=(",", ":"))
    path.write_bytes(gzip.compress(text.encode(), mtime=0))
    return f"wrote {path} ({len(recs)} traces, vLLM {answer['vllm']})"


def main(argv: list[str]) -> int:
    for kind in argv or list(RECORDINGS):
        print(record(kind))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
