// Paged attention for decode steps on the CPU: one query token per sequence, K/V read in place
// through the sequence's block table (no gathered copy), one pass with an online softmax.
// Built at start-up by cpu_kernels.py (g++ -O3 -march=native -ffast-math -fopenmp) and called
// through ctypes; the PyTorch path in attention.py computes the same thing and is the reference.
//
// q: [seqs, heads, d] (rows q_stride floats apart); out: [seqs, heads, d];
// kv: [blocks, block_size, 2, kv_heads, d] (a slot's K heads, then its V heads);
// tables: [seqs, max_blocks] block ids; lens: [seqs] tokens to attend to.
// Limits (checked by the loader): heads <= 64, d a multiple of 8 up to 128, block_size <= 64.
#include <ATen/Parallel.h>  // at::parallel_for: PyTorch's own OpenMP threads
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <array>
#include <utility>

typedef float v8 __attribute__((vector_size(32)));
static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

// One head over one block's n slots, V vectors of 8 dims: the head's output stays in V registers
// while the slots' V rows are added (compiled once per head size, so the loops have fixed lengths).
template <int V>
static void head_block(const float *qh, const float *k0, int64_t slot, int64_t v_off, int n, float scale,
                       float &m, float &l, float *ah) {
    float p[64], top = m, sum = 0.f;
    for (int t = 0; t < n; t++) {  // scores q.k for this block's slots
        const float *k = k0 + t * slot;
        v8 dot = load8(qh) * load8(k);
        for (int i = 1; i < V; i++) dot += load8(qh + 8 * i) * load8(k + 8 * i);
        float s = 0.f;
        for (int j = 0; j < 8; j++) s += dot[j];
        p[t] = s * scale;
        top = std::max(top, p[t]);
    }
#pragma omp simd reduction(+ : sum)
    for (int t = 0; t < n; t++) {
        p[t] = expf(p[t] - top);
        sum += p[t];
    }
    const float rescale = expf(m - top);  // earlier blocks were scaled by the old max
    v8 acc[V];
    for (int i = 0; i < V; i++) acc[i] = load8(ah + 8 * i) * rescale;
    for (int t = 0; t < n; t++) {  // add the weighted V rows
        const float *v = k0 + t * slot + v_off, w = p[t];
        for (int i = 0; i < V; i++) acc[i] += w * load8(v + 8 * i);
    }
    for (int i = 0; i < V; i++) store8(ah + 8 * i, acc[i]);
    m = top;
    l = l * rescale + sum;
}

typedef void (*head_fn)(const float *, const float *, int64_t, int64_t, int, float, float &, float &, float *);
template <int... V>
static constexpr std::array<head_fn, sizeof...(V)> by_size(std::integer_sequence<int, V...>) { return {head_block<V + 1>...}; }

extern "C" void paged_decode(float *out, const float *q, int64_t q_stride, const float *kv, const int64_t *tables,
                             const int64_t *lens, int seqs, int max_blocks, int heads, int kv_heads, int d,
                             int block_size, float scale) {
    static constexpr auto heads_of = by_size(std::make_integer_sequence<int, 16>());
    const head_fn head = heads_of[d / 8 - 1];
    const int group = heads / kv_heads;  // query heads per KV head (grouped-query attention)
    const int64_t slot = 2L * kv_heads * d, block = block_size * slot;
    at::parallel_for(0, seqs, 1, [&](int64_t first, int64_t last) {
        float m[64], l[64], acc[64 * 128];  // per head: running max, running sum, output
        for (int64_t s = first; s < last; s++) {
            const int len = (int)lens[s], num_blocks = (len + block_size - 1) / block_size;
            const float *qs = q + s * q_stride;
            std::fill(m, m + heads, -3.0e38f);  // finite: -ffast-math assumes no infinities
            std::fill(l, l + heads, 0.f);
            std::fill(acc, acc + heads * d, 0.f);
            for (int b = 0; b < num_blocks; b++) {
                const float *base = kv + tables[s * max_blocks + b] * block;
                // K/V come from DRAM: ask for the next block (this sequence's, else the next one's
                // first) a share of it per head, so the lines arrive while this block is computed.
                const int64_t nb = b + 1 < num_blocks ? tables[s * max_blocks + b + 1]
                                   : s + 1 < last ? tables[(s + 1) * max_blocks] : -1;
                const char *next = (const char *)(kv + std::max<int64_t>(nb, 0) * block);
                const int64_t share = nb < 0 ? 0 : (block * 4 / 64 + heads - 1) / heads * 64;
                const int n = std::min(block_size, len - b * block_size);
                for (int h = 0; h < heads; h++) {
                    for (int64_t byte = h * share; byte < std::min((h + 1) * share, block * 4); byte += 64)
                        __builtin_prefetch(next + byte);
                    head(qs + (int64_t)h * d, base + (h / group) * d, slot, kv_heads * d, n, scale, m[h], l[h],
                         acc + (int64_t)h * d);
                }
            }
            float *o = out + s * (int64_t)heads * d;
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < d; i++) o[(int64_t)h * d + i] = acc[(int64_t)h * d + i] / l[h];
        }
    });
}
