// Paged attention for decode steps on the CPU: one query token per sequence, K/V read in place
// through the sequence's block table (no gathered copy), one pass with an online softmax.
// Built at start-up by cpu_attention.py (g++ -O3 -march=native -ffast-math -fopenmp) and called
// through ctypes; the PyTorch path in attention.py computes the same thing and is the reference.
//
// q: [seqs, heads, d] (rows q_stride floats apart); out: [seqs, heads, d];
// kv: [blocks, block_size, 2, kv_heads, d] (a slot's K heads, then its V heads);
// tables: [seqs, max_blocks] block ids; lens: [seqs] tokens to attend to.
// Limits (checked by the loader): heads <= 64, d <= 128, block_size <= 64.
#include <ATen/Parallel.h>  // at::parallel_for: PyTorch's own OpenMP threads
#include <math.h>
#include <stdint.h>

#include <algorithm>

extern "C" void paged_decode(float *out, const float *q, int64_t q_stride, const float *kv, const int64_t *tables,
                             const int64_t *lens, int seqs, int max_blocks, int heads, int kv_heads, int d,
                             int block_size, float scale) {
    const int group = heads / kv_heads;  // query heads per KV head (grouped-query attention)
    const int64_t slot = 2L * kv_heads * d, block = block_size * slot;
    at::parallel_for(0, seqs, 1, [&](int64_t first, int64_t last) {
        float m[64], l[64], acc[64 * 128], p[64];  // per head: running max, running sum, output
        for (int64_t s = first; s < last; s++) {
            const int len = (int)lens[s], num_blocks = (len + block_size - 1) / block_size;
            const float *qs = q + s * q_stride;
            std::fill(m, m + heads, -3.0e38f);  // finite: -ffast-math assumes no infinities
            std::fill(l, l + heads, 0.f);
            std::fill(acc, acc + heads * d, 0.f);
            for (int b = 0; b < num_blocks; b++) {
                const float *base = kv + tables[s * max_blocks + b] * block;
                if (b + 1 < num_blocks) {  // ask for the next block now: K/V come from DRAM
                    const char *next = (const char *)(kv + tables[s * max_blocks + b + 1] * block);
                    for (int64_t byte = 0; byte < block * 4; byte += 64) __builtin_prefetch(next + byte);
                }
                const int n = std::min(block_size, len - b * block_size);
                for (int h = 0; h < heads; h++) {
                    const float *qh = qs + (int64_t)h * d, *k0 = base + (h / group) * d;
                    float top = m[h], sum = 0.f;
                    for (int t = 0; t < n; t++) {  // scores q.k for this block's slots
                        const float *k = k0 + t * slot;
                        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
                        for (int i = 0; i < d; i++) dot += qh[i] * k[i];
                        p[t] = dot * scale;
                        top = std::max(top, p[t]);
                    }
#pragma omp simd reduction(+ : sum)
                    for (int t = 0; t < n; t++) {
                        p[t] = expf(p[t] - top);
                        sum += p[t];
                    }
                    const float rescale = expf(m[h] - top);  // earlier blocks were scaled by the old max
                    float *ah = acc + (int64_t)h * d;
                    m[h] = top;
                    l[h] = l[h] * rescale + sum;
                    for (int i = 0; i < d; i++) ah[i] *= rescale;
                    for (int t = 0; t < n; t++) {  // add the weighted V rows
                        const float *v = k0 + t * slot + kv_heads * d, w = p[t];
#pragma omp simd
                        for (int i = 0; i < d; i++) ah[i] += w * v[i];
                    }
                }
            }
            float *o = out + s * (int64_t)heads * d;
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < d; i++) o[(int64_t)h * d + i] = acc[(int64_t)h * d + i] / l[h];
        }
    });
}
