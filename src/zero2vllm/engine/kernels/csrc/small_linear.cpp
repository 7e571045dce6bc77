// y = x @ W^T for the few rows of a decode step (M <= 16), fp32 on the CPU. There every weight is
// read from DRAM once per step and used M times, so the matmul is bound by how fast the weights
// stream in; oneDNN's blocked kernel reaches about half of what the memory gives. Here W is kept as
// panels of 16 output columns, [N / 16][K][16], so each thread reads its panels front to back, one
// cache line per k, asking for the line 1 KB ahead; the 16 x 16 outputs of a panel stay in registers.
#include <ATen/Parallel.h>
#include <stdint.h>
#include <string.h>

#include <vector>

typedef float v16 __attribute__((vector_size(64)));

extern "C" void small_linear(float *y, const float *x, const float *panels, int M, int K, int N) {
    std::vector<float> xt(16 * (size_t)K, 0.f);  // x transposed, [K][16], rows past M zero
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) xt[k * 16 + m] = x[(int64_t)m * K + k];
    at::parallel_for(0, N / 16, 1, [&](int64_t first, int64_t last) {
        for (int64_t p = first; p < last; p++) {
            const float *w = panels + p * K * 16;
            v16 acc[16] = {};
            for (int k = 0; k < K; k++) {
                v16 wk;
                memcpy(&wk, w + k * 16, sizeof wk);
                __builtin_prefetch(w + k * 16 + 256);
#pragma GCC unroll 16
                for (int m = 0; m < 16; m++) acc[m] += xt[k * 16 + m] * wk;
            }
            for (int m = 0; m < M; m++) memcpy(y + (int64_t)m * N + p * 16, &acc[m], sizeof acc[m]);
        }
    });
}
