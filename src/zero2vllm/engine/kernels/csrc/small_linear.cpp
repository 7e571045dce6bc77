// y = x @ W^T for the few rows of a decode step (M <= 16), fp32 on the CPU. There every weight is
// read from DRAM once per step and used M times, so the matmul is bound by how fast the weights
// stream in; oneDNN's blocked kernel reaches about half of what the memory gives. Here W is kept as
// panels of 16 output columns, [N / 16][K][16], so each thread reads its panels front to back, one
// cache line per k, asking for the line 1 KB ahead; a tile of rows' outputs stays in registers: all 16
// rows with AVX-512's 32 registers; with AVX2's 16, 5 rows (10 sums + 5 broadcasts) at a time, since
// 16 rows' sums spilled to the stack and ran 6x slower than oneDNN on a Zen 3.
#include <ATen/Parallel.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#ifdef __AVX512F__
enum { VW = 16, MT = 16 };  // floats per vector register; rows per register tile
#else
enum { VW = 8, MT = 5 };
#endif
enum { VP = 16 / VW, XW = (16 + MT - 1) / MT * MT };  // vectors per panel row; x's padded width
typedef float vec __attribute__((vector_size(VW * 4)));
// By value, so the accumulators never have their address taken and stay in registers.
static inline vec loadu(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void storeu(float *p, vec v) { memcpy(p, &v, sizeof v); }

extern "C" void small_linear(float *y, const float *x, const float *panels, int M, int K, int N) {
    std::vector<float> xt(XW * (size_t)K, 0.f);  // x transposed, [K][XW], rows past M zero
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) xt[k * XW + m] = x[(int64_t)m * K + k];
    at::parallel_for(0, N / 16, 1, [&](int64_t first, int64_t last) {
        for (int64_t p = first; p < last; p++) {
            const float *w = panels + p * K * 16;
            for (int m0 = 0; m0 < M; m0 += MT) {  // further row tiles read the panel again, from L2
                vec acc[MT][VP] = {};
                for (int k = 0; k < K; k++) {
                    __builtin_prefetch(w + k * 16 + 256);
#pragma GCC unroll 2
                    for (int c = 0; c < VP; c++) {
                        const vec wk = loadu(w + k * 16 + c * VW);
#pragma GCC unroll 16
                        for (int m = 0; m < MT; m++) acc[m][c] += xt[k * XW + m0 + m] * wk;
                    }
                }
                for (int m = m0; m < M && m < m0 + MT; m++)
                    for (int c = 0; c < VP; c++) storeu(y + (int64_t)m * N + p * 16 + c * VW, acc[m - m0][c]);
            }
        }
    });
}
