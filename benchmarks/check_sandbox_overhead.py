"""What the check sandbox (src/zero2vllm/labs/sandbox.py) adds to starting a check's process.

Starts `python -c pass` N times each way, alternating: plainly (as checks were started before
the sandbox: own session, no limits), and through the sandbox exactly as `z2v check` does
(cgroups made and removed, rlimits, bubblewrap when it works here). Prints the median and p90
of each and the difference; the whole check adds its own torch import and criteria on top.

    PYTHONPATH=src python benchmarks/check_sandbox_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from zero2vllm.labs.sandbox import Sandbox  # noqa: E402


def plain() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], start_new_session=True, check=True)
    return time.perf_counter() - t


def boxed(learner: Path, hide: Path) -> tuple[float, str]:
    t = time.perf_counter()
    with Sandbox(learner, hide=[hide]) as box:
        proc = subprocess.Popen(box.command([sys.executable, "-c", "pass"]), env=box.env(dict(os.environ)),
                                cwd=str(box.cwd), preexec_fn=box.preexec)
        box.started(proc)
        proc.wait()
        box.kill()
        isolation = box.isolation
    assert proc.returncode == 0
    return time.perf_counter() - t, isolation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        learner, hide = Path(tmp, "mine"), Path(tmp, "data")
        learner.mkdir()
        hide.mkdir()
        a, b = [], []
        for _ in range(args.runs):
            a.append(plain())
            t, isolation = boxed(learner, hide)
            b.append(t)
    ms = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000  # noqa: E731
    print(f"isolation: {isolation}\nload average before: {os.getloadavg()[0]:.1f}")
    print(f"plain    median {ms(a, 0.5):.0f} ms, p90 {ms(a, 0.9):.0f} ms")
    print(f"sandbox  median {ms(b, 0.5):.0f} ms, p90 {ms(b, 0.9):.0f} ms")
    print(f"added    median {statistics.median(b) * 1000 - statistics.median(a) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
