// y = x @ W^T for the few rows of a decode step (M <= 16), fp32 on the CPU. There every weight is
// read from DRAM once per step and used M times, so the matmul is bound by how fast the weights
// stream in; oneDNN's blocked kernel reaches about half of what the memory gives. Here W is kept as
// panels of 16 output columns, [N / 16][K][16], so each thread reads its panels front to back, one
// cache line per k, asking for the line 1 KB ahead; a tile of rows' outputs stays in registers: all 16
// rows with AVX-512's 32 registers; with AVX2's 16, at most 6 rows (12 sums + 2 panel vectors + 1
// broadcast) at a time, since 16 rows' sums spilled to the stack and ran 6x slower than oneDNN on a Zen 3.
#include <ATen/Parallel.h>
#include <stdint.h>
#include <string.h>

#include <array>
#include <utility>
#include <vector>

#ifdef __AVX512F__
enum { VW = 16, MT = 16 };  // floats per vector register; most rows per register tile
#else
enum { VW = 8, MT = 6 };  // 12 sums: enough to hide the FMAs' latency, 5 rows (10) were not
#endif
enum { VP = 16 / VW };  // vectors per panel row
typedef float vec __attribute__((vector_size(VW * 4)));
// By value, so the accumulators never have their address taken and stay in registers.
static inline vec loadu(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void storeu(float *p, vec v) { memcpy(p, &v, sizeof v); }

// R rows (m0..m0+R) of one panel's 16 outputs; xt is x transposed, [K][16].
template <int R>
static void tile(float *y, const float *xt, const float *w, int K, int N, int m0) {
    vec acc[R][VP] = {};
    for (int k = 0; k < K; k++) {
        __builtin_prefetch(w + k * 16 + 256);
        vec wk[VP];  // the panel's row k, then one row of x at a time: 2R sums + 2 + 1 registers
        for (int c = 0; c < VP; c++) wk[c] = loadu(w + k * 16 + c * VW);
#pragma GCC unroll 16
        for (int m = 0; m < R; m++) {
            const float xk = xt[k * 16 + m0 + m];
            for (int c = 0; c < VP; c++) acc[m][c] += xk * wk[c];
        }
    }
    for (int m = 0; m < R; m++)
        for (int c = 0; c < VP; c++) storeu(y + (int64_t)(m0 + m) * N + c * VW, acc[m][c]);
}

typedef void (*tile_fn)(float *, const float *, const float *, int, int, int);
template <int... R>
static constexpr std::array<tile_fn, sizeof...(R)> tiles(std::integer_sequence<int, R...>) { return {tile<R + 1>...}; }

extern "C" void small_linear(float *y, const float *x, const float *panels, int M, int K, int N) {
    static constexpr auto by_rows = tiles(std::make_integer_sequence<int, MT>());
    std::vector<float> xt(16 * (size_t)K);  // x transposed, [K][16]
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) xt[k * 16 + m] = x[(int64_t)m * K + k];
    // Rows split into tiles of nearly equal size (16 -> 6 + 5 + 5 with AVX2), each compiled for its
    // row count, so no sums are spent on padding. Tiles after the first read the panel again, from L2.
    const int n_tiles = (M + MT - 1) / MT, base = M / n_tiles, extra = M % n_tiles;
    at::parallel_for(0, N / 16, 1, [&](int64_t first, int64_t last) {
        for (int64_t p = first; p < last; p++)
            for (int t = 0, m0 = 0; t < n_tiles; m0 += base + (t < extra), t++)
                by_rows[base + (t < extra) - 1](y + p * 16, xt.data(), panels + p * K * 16, K, N, m0);
    });
}
