"""How many CPU threads the instruments use, and whether the machine is too busy to trust.

torch's default is one thread per core. On a small machine that other programs keep busy, its
threads wait for each other at every operator (decode steps several times slower than with one
thread), and the numbers then teach the wrong lesson. So `z2v profile kv` and
`z2v serve naive` measure: short bursts of decode-shaped matrix products at each candidate thread
count, interleaved, median of five; the fewest threads within 10% of the fastest win. The choice and the load
are printed with the result, so a reader knows what the numbers were measured under.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_note(cores: int | None = None, load: float | None = None) -> str | None:
    """A warning when the 1-minute load is over the core count (others want the CPU too)."""
    cores = cores or usable_cores()
    load = load_average() if load is None else load
    if load is None or load <= cores:
        return None
    return (f"note: this machine is busy (load {load:.1f} over {cores} cores): other programs "
            "share the CPU, so times are slower and noisier than on an idle machine")


@dataclass
class ThreadChoice:
    threads: int
    cores: int
    load: float | None
    how: str  # "measured", "--threads" or "not a CPU run"
    timings_ms: dict[int, float] = field(default_factory=dict)

    def describe(self) -> str:
        load = f", load {self.load:.1f}" if self.load is not None else ""
        if self.how == "measured":
            times = ", ".join(f"{n}: {ms:.1f} ms" for n, ms in sorted(self.timings_ms.items()))
            return f"{self.threads} CPU thread(s), measured ({times}; {self.cores} cores{load})"
        return f"{self.threads} CPU thread(s), {self.how} ({self.cores} cores{load})"

    def to_dict(self) -> dict:
        return {"threads": self.threads, "cores": self.cores, "load": self.load, "how": self.how,
                "timings_ms": {str(k): round(v, 2) for k, v in self.timings_ms.items()}}


def _burst_ms(torch, threads: int, x, w, reps: int = 10) -> float:
    """One burst of decode-shaped work: a few rows times a weight matrix, many small steps
    (where waiting threads cost most)."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.relu(x @ w)
    return (time.perf_counter() - t0) * 1000


def _measure(torch, candidates: list[int], rounds: int = 5) -> dict[int, float]:
    """Median burst time per thread count, the counts interleaved round by round so a busy
    spell of another program does not land on one of them only. A count 3x slower than the
    best after a round is out (on a loaded machine those bursts take seconds)."""
    x, w = torch.randn(4, 576), torch.randn(576, 1536)
    times: dict[int, list[float]] = {n: [] for n in candidates}
    live = list(candidates)
    for _ in range(rounds):
        for n in live:
            times[n].append(_burst_ms(torch, n, x, w))
        best = min(min(v) for v in times.values() if v)
        live = [n for n in live if min(times[n]) <= 3 * best]
    return {n: sorted(v)[len(v) // 2] for n, v in times.items()}


def choose_threads(requested: int | None = None, *, device: str = "cpu") -> ThreadChoice:
    """Set torch's thread count: REQUESTED if given, else the measured best for this machine."""
    import torch

    cores, load = usable_cores(), load_average()
    if requested:
        torch.set_num_threads(requested)
        return ThreadChoice(requested, cores, load, "--threads")
    if not device.startswith("cpu"):
        return ThreadChoice(torch.get_num_threads(), cores, load, "not a CPU run")
    candidates = sorted({1, max(1, cores // 2), cores})
    timings = _measure(torch, candidates)
    fastest = min(timings.values())
    threads = min(n for n, ms in timings.items() if ms <= fastest * 1.10)
    torch.set_num_threads(threads)
    return ThreadChoice(threads, cores, load, "measured", timings)
