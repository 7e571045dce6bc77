"""The thread that owns the engine: it alone calls `step()`; the asyncio thread talks to it by queue.

After each step it hands every new token to the asyncio thread in one `call_soon_threadsafe`.
A step that fails for one sequence fails only that one (LLMEngine.step retries the others);
a step that fails outside any sequence aborts everything queued and says why to every client.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading

from .llm_engine import LLMEngine
from .sequence import Sequence


class EngineThread(threading.Thread):
    def __init__(self, engine: LLMEngine, loop: asyncio.AbstractEventLoop):
        super().__init__(name="engine", daemon=True)
        self.engine, self.loop = engine, loop
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.streams: dict[int, asyncio.Queue] = {}

    def submit(self, seq: Sequence) -> asyncio.Queue:
        """Queue SEQ; its (token, finish_reason) pairs arrive on the returned queue, (None, why) on failure."""
        out: asyncio.Queue = asyncio.Queue()
        self.inbox.put(("add", seq, out))
        return out

    def abort(self, seq: Sequence) -> None:
        self.inbox.put(("abort", seq, None))

    def run(self) -> None:
        engine = self.engine
        while True:
            block = not engine.has_work()  # idle: sleep until a request arrives
            try:
                while True:
                    kind, seq, out = self.inbox.get(block=block)
                    block = False
                    if kind == "add":
                        self.streams[seq.seq_id] = out
                        engine.add(seq)
                    elif self.streams.pop(seq.seq_id, None) is not None:
                        engine.abort(seq)
            except queue.Empty:
                pass
            try:
                updated = engine.step()
            except Exception as exc:  # noqa: BLE001 - report to every waiting client instead of dying silently
                print(f"engine step failed: {exc!r}", file=sys.stderr, flush=True)
                engine.abort_all()
                events = [(q, None, f"{type(exc).__name__}: {exc}") for q in self.streams.values()]
                self.streams.clear()
                self.loop.call_soon_threadsafe(_deliver, events)
                continue
            events = []
            for seq in updated:
                out = self.streams.pop(seq.seq_id) if seq.is_finished else self.streams.get(seq.seq_id)
                if out is not None:
                    events.append((out, None, seq.error) if seq.error else (out, seq.last_token, seq.finish_reason))
            if events:
                self.loop.call_soon_threadsafe(_deliver, events)


def _deliver(events) -> None:
    for out, token, finish_reason in events:
        out.put_nowait((token, finish_reason))
