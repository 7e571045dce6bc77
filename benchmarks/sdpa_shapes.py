"""Why prompt steps were slow: the first call at a new shape, for SDPA (cuDNN backend on or off) and a matmul.

    python benchmarks/sdpa_shapes.py      # on a GPU

Every prompt step of a mixed workload has a new length. A backend that builds a plan per shape
pays that on every such step; this times the first call at five fresh lengths against a repeat.
"""
import statistics
import time

import torch
import torch.nn.functional as F


def ms(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3


def first_and_again(make, lengths):
    firsts, again = [], []
    for n in lengths:
        fn = make(n)
        firsts.append(ms(fn))
        again.append(ms(fn))
    return statistics.median(firsts), statistics.median(again)


def main():
    kw = dict(device="cuda", dtype=torch.bfloat16)
    print(torch.cuda.get_device_name(), torch.__version__, "cuDNN", torch.backends.cudnn.version())

    extra = 16  # keys past the last query: the gathered blocks' padding

    def sdpa(n):
        q, k, v = torch.randn(1, 32, n, 64, **kw), torch.randn(1, 8, n + extra, 64, **kw), \
            torch.randn(1, 8, n + extra, 64, **kw)
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    w = torch.randn(16384, 2048, **kw)

    def gemm(n):
        x = torch.randn(n, 2048, **kw)
        return lambda: x @ w.T

    sdpa(64)(), gemm(64)()  # load the libraries
    for cudnn, base in ((True, 300), (False, 400)):
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        first, again = first_and_again(sdpa, range(base, base + 5))
        print(f"SDPA causal GQA, cuDNN backend {'on ' if cudnn else 'off'}: first call at a new length {first:.2f} ms, "
              f"the same length again {again:.2f} ms")
    extra = 0
    first, again = first_and_again(sdpa, range(700, 705))
    print(f"SDPA causal GQA, cuDNN off, as many keys as queries: first call {first:.2f} ms, again {again:.2f} ms")
    extra = 16
    first, again = first_and_again(sdpa, range(710, 715))
    print(f"SDPA causal GQA, cuDNN off, 16 keys more than queries: first call {first:.2f} ms, again {again:.2f} ms")
    first, again = first_and_again(gemm, range(1000, 1005))
    print(f"matmul [n, 2048] x [2048, 16384]: first call at a new n {first:.2f} ms, again {again:.2f} ms")


if __name__ == "__main__":
    main()
