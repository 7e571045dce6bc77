"""What the kv-cache criteria measure the learner's model with: building it, calling it with and
without a cache, the greedy sliding window, the bytes a cache really holds, and matmul FLOPs.

Everything here observes behaviour through the lab's interface (KVCache(config), model(idx,
kv_cache=cache), generate), so any internal design of the cache is judged alike.
"""

from __future__ import annotations

import inspect

from zero2vllm.labs.framework import CheckFailed


SMALL = dict(vocab_size=65, block_size=48, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


def build(ctx, seed: int = 0, std: float | None = 0.3, **overrides):
    """The learner's GPT in eval mode; with `std`, large random weights so mistakes show."""
    import torch

    mod = ctx.module
    for name in ("GPTConfig", "GPT", "KVCache"):
        if not hasattr(mod, name):
            raise CheckFailed(f"model.py has no {name}",
                              hint="keep the names of the scaffold: GPTConfig, GPT and KVCache")
    torch.manual_seed(seed)
    cfg = mod.GPTConfig(**{**SMALL, **overrides})
    model = mod.GPT(cfg).eval()
    if std is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model, cfg


def logits_of(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def full(model, idx):
    """The week-1 path: every position at once, no cache."""
    import torch

    with torch.no_grad():
        return logits_of(model(idx))


def cached_call(model, idx, cache):
    import torch

    with torch.no_grad():
        try:
            return logits_of(model(idx, kv_cache=cache))
        except TypeError as exc:
            if "kv_cache" in str(exc):
                raise CheckFailed("model(idx, kv_cache=cache) is not accepted", got=str(exc),
                                  hint="add a kv_cache=None argument to GPT.forward") from None
            raise


def new_cache(ctx, cfg):
    cache = ctx.module.KVCache(cfg)
    try:
        n = len(cache)
    except NotImplementedError:
        raise CheckFailed("KVCache is not written yet (len(cache) raises NotImplementedError)",
                          hint="fill in the TODOs of KVCache: seq_len and update") from None
    if n != 0:
        raise CheckFailed("a new KVCache is not empty", expected="len(cache) == 0", got=str(n),
                          hint="is the storage a class attribute, shared by every KVCache?")
    return cache


def close(a, b) -> tuple[bool, float]:
    """Equal up to float32 rounding of another (correct) order of operations."""
    err = (a - b).abs().max().item()
    return err <= 1e-3 * max(1.0, b.abs().max().item()), err


def not_greedy(model, prompt, got, block: int):
    """Where `got` (the prompt and its continuation) is not a greedy decode of the uncached model
    over a sliding window of `block` tokens: (row, position) of the first wrong token, or None.
    Teacher-forced, so a near-tie that another correct order of operations breaks the other way
    is not a mistake."""
    import torch

    if tuple(got.shape[:1]) != tuple(prompt.shape[:1]) or not torch.equal(got[:, :prompt.shape[1]], prompt):
        return (0, 0)
    p, n = prompt.shape[1], got.shape[1]
    within = full(model, got[:, :min(n - 1, block)]) if p <= block else None  # one causal pass
    for t in range(p, n):
        if t <= block:
            logits = within[:, t - 1]
        else:
            logits = full(model, got[:, t - block:t])[:, -1]
        picked = logits.gather(-1, got[:, t:t + 1]).squeeze(-1)
        gap = logits.max(-1).values - picked
        bad = (gap > 1e-4 * max(1.0, logits.abs().max().item())).nonzero()
        if len(bad):
            return (bad[0, 0].item(), t)
    return None


def generate(model, idx, new: int, **kw):
    try:
        return model.generate(idx, new, **kw)
    except TypeError as exc:
        if "use_cache" in str(exc):
            raise CheckFailed("generate does not take use_cache", got=str(exc),
                              hint="generate(idx, max_new_tokens, temperature=1.0, top_k=None, "
                                   "use_cache=True)") from None
        raise


# -- the bytes a cache holds --------------------------------------------------------------------
def held_bytes(obj) -> int:
    """Bytes of every tensor storage reachable from `obj` (attributes, lists, dicts), each storage
    counted once: views count their whole base, which is what stays in memory. Modules with
    parameters (the model itself) are not the cache's and are skipped."""
    import torch

    seen_obj, storages = set(), {}

    def walk(x, depth):
        if depth > 8 or id(x) in seen_obj:
            return
        seen_obj.add(id(x))
        if isinstance(x, torch.Tensor):
            st = x.untyped_storage()
            storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        elif isinstance(x, (list, tuple, set, frozenset)):
            for item in x:
                walk(item, depth + 1)
        elif isinstance(x, dict):
            for item in x.values():
                walk(item, depth + 1)
        elif isinstance(x, torch.nn.Module) and any(True for _ in x.parameters()):
            return
        elif isinstance(x, (str, bytes, int, float, bool, type(None), type)) or inspect.isroutine(x) \
                or inspect.ismodule(x):
            return
        else:
            for name in getattr(type(x), "__slots__", ()):
                if hasattr(x, name):
                    walk(getattr(x, name), depth + 1)
            if hasattr(x, "__dict__"):
                walk(vars(x), depth + 1)

    walk(obj, 0)
    return sum(storages.values())


def _einsum_flops(args) -> int:
    """An einsum's FLOPs contracted pairwise in the cheapest order (as opt_einsum would): each
    pair costs 2 x the product of the sizes of all its letters."""
    eq = args[0].replace(" ", "")
    ins, _, out = eq.partition("->")
    ops = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
    sizes = {}
    for spec, op in zip(ins.split(","), ops):
        if "..." in spec:
            return 0  # broadcast dims: not counted
        sizes.update(zip(spec, op.shape))
    terms = [set(spec) for spec in ins.split(",")]

    def prod(letters):
        n = 1
        for letter in letters:
            n *= sizes.get(letter, 1)
        return n

    if len(terms) == 1:
        return prod(terms[0])
    total = 0
    while len(terms) > 1:
        best = None
        for i in range(len(terms)):
            for j in range(i + 1, len(terms)):
                cost = 2 * prod(terms[i] | terms[j])
                if best is None or cost < best[0]:
                    best = (cost, i, j)
        cost, i, j = best
        rest = set(out).union(*[t for n, t in enumerate(terms) if n not in (i, j)])
        merged = (terms[i] | terms[j]) & rest
        terms = [t for n, t in enumerate(terms) if n not in (i, j)] + [merged]
        total += cost
    return total


def _matmul_flops(name: str, args, out) -> int:
    """Multiply-adds x 2 of one call, from its operands' and result's shapes."""
    import torch

    if not isinstance(out, torch.Tensor):
        return 0
    if name in ("matmul", "__matmul__", "mm", "bmm"):
        return 2 * out.numel() * args[0].shape[-1]
    if name in ("addmm", "baddbmm"):
        return 2 * out.numel() * args[1].shape[-1]
    if name == "linear":
        return 2 * out.numel() * args[1].shape[-1]
    if name == "scaled_dot_product_attention":
        return 4 * args[0].numel() * args[1].shape[-2]
    if name == "einsum":
        return _einsum_flops(args)
    return 0


def flops(fn) -> int:
    """Matmul FLOPs of `fn()`: every torch matmul, linear, einsum and attention call, counted at
    the Python level (a TorchFunctionMode), so any way of writing the model is measured alike."""
    from torch.overrides import TorchFunctionMode

    total = [0]

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            try:
                total[0] += _matmul_flops(getattr(func, "__name__", ""), args, out)
            except Exception:  # noqa: BLE001 - an odd call form counts as nothing, never fails
                pass
            return out

    with Count():
        fn()
    return total[0]


def rows_hint(got, want) -> str | None:
    rows = [b for b in range(got.shape[0]) if not close(got[b], want[b])[0]]
    if 0 < len(rows) < got.shape[0]:
        return f"only batch rows {rows} are wrong: is the cache shared between batch rows?"
    return None


def median_ms(fn, reps: int) -> float:
    import statistics
    import time

    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
