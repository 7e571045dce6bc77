"""Issue 15: CPU instruments pick a thread count that fits the machine and say when it is busy."""

from __future__ import annotations

import pytest

from zero2vllm.instruments import cputhreads


def test_busy_only_when_the_load_is_over_the_cores():
    assert cputhreads.busy_note(cores=2, load=1.9) is None
    note = cputhreads.busy_note(cores=2, load=6.3)
    assert "busy" in note and "load 6.3 over 2 cores" in note


@pytest.mark.parametrize("timings, want", [({1: 10.0, 2: 9.5}, 1),   # within 10%: fewer threads
                                           ({1: 10.0, 2: 5.0}, 2),   # really faster: more
                                           ({1: 7.0, 2: 300.0}, 1)])  # busy cores: threads wait
def test_the_fewest_threads_within_ten_percent_of_the_fastest(monkeypatch, timings, want):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(cputhreads, "usable_cores", lambda: 2)
    monkeypatch.setattr(cputhreads, "_measure", lambda _torch, candidates: {n: timings[n] for n in candidates})
    before = torch.get_num_threads()
    try:
        choice = cputhreads.choose_threads()
        assert choice.threads == want and torch.get_num_threads() == want
        assert choice.how == "measured" and f"{want} CPU thread(s), measured" in choice.describe()
        assert cputhreads.choose_threads(3).describe().startswith("3 CPU thread(s), --threads")
    finally:
        torch.set_num_threads(before)
