// The elementwise steps between a layer's matmuls, one pass each, for fp32 on the CPU (vLLM's
// csrc/cpu: fused_add_rms_norm, silu_and_mul, rotary_embedding). In PyTorch each is 3-10 ops, every
// one a dispatch and a pass over memory; on a GPU torch.compile fuses them (model.py's @fused).
// Rows are split across PyTorch's threads; model.py's Python versions are the reference.
#include <ATen/Parallel.h>
#include <math.h>
#include <stdint.h>

// res = x + y; out = w * res / sqrt(mean(res^2) + eps), per row of n (Hugging Face's RMSNorm).
extern "C" void add_rms_norm(float *res, float *out, const float *x, const float *y, const float *w, int64_t rows,
                             int64_t n, float eps) {
    at::parallel_for(0, rows, 16, [&](int64_t first, int64_t last) {
        for (int64_t r = first; r < last; r++) {
            const float *xr = x + r * n, *yr = y + r * n;
            float *rr = res + r * n, *o = out + r * n, sq = 0.f;
#pragma omp simd reduction(+ : sq)
            for (int64_t i = 0; i < n; i++) {
                rr[i] = xr[i] + yr[i];
                sq += rr[i] * rr[i];
            }
            const float inv = 1.f / sqrtf(sq / n + eps);
#pragma omp simd
            for (int64_t i = 0; i < n; i++) o[i] = w[i] * (rr[i] * inv);
        }
    });
}

// out = silu(gate) * up, where each row of gate_up is [gate (n) | up (n)]. exp's argument is capped:
// -ffast-math assumes no infinities, and gate / inf gave NaN where PyTorch gives 0.
extern "C" void silu_mul(float *out, const float *gate_up, int64_t rows, int64_t n) {
    at::parallel_for(0, rows, 4, [&](int64_t first, int64_t last) {
        for (int64_t r = first; r < last; r++) {
            const float *g = gate_up + r * 2 * n, *u = g + n;
            float *o = out + r * n;
#pragma omp simd
            for (int64_t i = 0; i < n; i++) o[i] = g[i] / (1.f + expf(fminf(-g[i], 80.f))) * u[i];
        }
    });
}

// From each row of qkv = [q heads | k heads | v heads] (d each): q with RoPE into q_out [h, d], and
// [K with RoPE | V] into kv_out [2, kvh, d], as a cache slot holds them. cos/sin: [rows, d], the
// minus sign of "rotate half" stored in sin's first half (model.py's rope_tables).
extern "C" void rope_qkv(float *q_out, float *kv_out, const float *qkv, const float *cos, const float *sin,
                         int64_t rows, int h, int kvh, int d) {
    const int half = d / 2, width = (h + 2 * kvh) * d;
    at::parallel_for(0, rows, 4, [&](int64_t first, int64_t last) {
        for (int64_t r = first; r < last; r++) {
            const float *src = qkv + r * width, *c = cos + r * d, *s = sin + r * d;
            for (int head = 0; head < h + kvh; head++) {  // q heads, then k heads
                const float *x = src + head * d;
                float *o = head < h ? q_out + (r * h + head) * d : kv_out + (r * 2 * kvh + head - h) * d;
#pragma omp simd
                for (int i = 0; i < half; i++) {
                    o[i] = x[i] * c[i] + x[i + half] * s[i];
                    o[i + half] = x[i + half] * c[i + half] + x[i] * s[i + half];
                }
            }
            const float *v = src + (h + kvh) * d;
            float *vo = kv_out + (r * 2 + 1) * kvh * d;
            for (int i = 0; i < kvh * d; i++) vo[i] = v[i];
        }
    });
}
