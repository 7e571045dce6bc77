"""Where the time of `z2v serve engine` goes, step by step, while `z2v bench` loads it.

    PYTHONPATH=src python benchmarks/engine_server_steps.py [--requests 32] [-- SERVER FLAGS...]

Runs the server in this process with a timer around every `engine.step()` and the model forward
inside it. A helper thread waits for /health, runs `z2v bench --api openai --concurrency 16
--output-len 64`, and then prints three things:
- the median decode step (16 sequences, one token each), split into forward and the rest;
- the largest prompt steps;
- the CPU time the asyncio (HTTP) thread used, from /proc (Linux).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from zero2vllm.commands import serve_engine
from zero2vllm.engine import llm_engine, model_runner

steps: list[tuple[int, int, float, float]] = []  # tokens, sequences, step s, forward s
forward_s = [0.0]


def timed_step(real):
    def step(self):
        start = time.perf_counter()
        out = real(self)
        if self.last_batch:
            b = self.last_batch
            steps.append((b.num_tokens, len(b.items), time.perf_counter() - start, forward_s[0]))
        return out
    return step


def timed_run(real):
    def run(self, batch, eos_token_ids=()):
        model_forward = self.model.forward

        def forward(*args):
            start = time.perf_counter()
            out = model_forward(*args)
            forward_s[0] = time.perf_counter() - start
            return out
        self.model.forward = forward
        try:
            return real(self, batch, eos_token_ids)
        finally:
            del self.model.forward
    return run


def cpu_seconds(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def drive(port: int, requests: int, main_tid: int) -> None:
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    before = cpu_seconds(main_tid)
    bench = subprocess.run([sys.executable, "-m", "zero2vllm", "bench", f"http://127.0.0.1:{port}", "--api", "openai",
                            "--concurrency", "16", "--requests", str(requests), "--output-len", "64"],
                           capture_output=True, text=True)
    http_cpu = cpu_seconds(main_tid) - before
    print(next((ln for ln in bench.stdout.splitlines() if "concurrency 16:" in ln), bench.stdout[-500:]))
    decode = [s for s in steps if s[0] == s[1] == 16]
    if decode:
        step, fwd = statistics.median(s[2] for s in decode), statistics.median(s[3] for s in decode)
        print(f"decode steps of 16: {len(decode)}, median {step * 1000:.1f} ms = forward {fwd * 1000:.1f} ms "
              f"+ {1000 * (step - fwd):.1f} ms (LM head, inputs, sampling, bookkeeping)")
    for tokens, seqs, step, fwd in sorted(steps, reverse=True)[:3]:
        print(f"prompt step: {tokens} tokens, {seqs} sequences, {step * 1000:.0f} ms (forward {fwd * 1000:.0f} ms)")
    print(f"asyncio (HTTP) thread CPU during the bench: {http_cpu:.2f} s")
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--port", type=int, default=8157)
    args, server_flags = ap.parse_known_args()
    llm_engine.LLMEngine.step = timed_step(llm_engine.LLMEngine.step)
    model_runner.ModelRunner.run = timed_run(model_runner.ModelRunner.run)
    threading.Thread(target=drive, args=(args.port, args.requests, threading.get_native_id()), daemon=True).start()
    serve_engine.main(["--port", str(args.port), *[f for f in server_flags if f != "--"]])


if __name__ == "__main__":
    main()
