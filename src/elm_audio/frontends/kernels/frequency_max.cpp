// The maximum over frequency offsets of a one-channel convolution of a spectrogram, float32,
// computed without writing the map: each block of R offsets x BLOCK_FILTERS filters sums its
// products in registers and only their maximum leaves them (frontends/compiled.py builds and
// calls this; docs/performance.md says why). GCC's vector extensions, built with
// -march=native: 16-float vectors where the CPU has AVX-512, 8-float ones otherwise.
#include <stdint.h>

#if defined(__AVX512F__)
#define VECTOR_FLOATS 16
#define MAX_OFFSETS 12  // 2 x 12 accumulators, 2 filter vectors and a broadcast: 27 of 32 registers
#else
#define VECTOR_FLOATS 8
#define MAX_OFFSETS 6  // 2 x 6 accumulators of 16 registers
#endif
#define VECTORS 2
#define BLOCK_FILTERS (VECTOR_FLOATS * VECTORS)

typedef float floats __attribute__((vector_size(VECTOR_FLOATS * 4), aligned(4)));

typedef int32_t ints __attribute__((vector_size(VECTOR_FLOATS * 4), aligned(4)));
typedef int16_t halves __attribute__((vector_size(VECTOR_FLOATS * 2), aligned(2)));
typedef uint8_t bytes __attribute__((vector_size(VECTOR_FLOATS), aligned(1)));

// A block's first n outputs, y[VECTORS] of lanes T, stored at o: whole vectors where the block
// is full, through a buffer where the layer's filters end inside it. memcpy, not a store through
// a V*: a template argument loses the typedefs' alignment attribute, and an aligned store to an
// output row faults.
template <typename T, typename V>
static inline void store_block(T* o, const V* y, int n) {
  if (n == BLOCK_FILTERS) {
    __builtin_memcpy(o, y, sizeof(T) * BLOCK_FILTERS);
    return;
  }
  T last[BLOCK_FILTERS];
  __builtin_memcpy(last, y, sizeof(T) * BLOCK_FILTERS);
  for (int k = 0; k < n; k++) o[k] = last[k];
}

// The sums of products of a filter window (rows x cols of x, ``stride`` apart) at R
// consecutive positions along a row with one block of filters (w: rows * cols rows of
// BLOCK_FILTERS), in a[R][VECTORS]: R x 2 registers.
template <int R>
static inline __attribute__((always_inline)) void window_sums(const float* __restrict xr, int stride,
                                                              const float* __restrict w, int rows, int cols,
                                                              floats (*a)[VECTORS]) {
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int v = 0; v < VECTORS; v++) a[r][v] = floats{};
  for (int j = 0; j < rows; j++) {
    const float* xs = xr + j * stride;
    const float* wj = w + j * cols * BLOCK_FILTERS;
    for (int i = 0; i < cols; i++) {
      floats b[VECTORS];
#pragma GCC unroll 4
      for (int v = 0; v < VECTORS; v++) b[v] = *(const floats*)(wj + i * BLOCK_FILTERS + v * VECTOR_FLOATS);
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        float s = xs[r + i];
#pragma GCC unroll 4
        for (int v = 0; v < VECTORS; v++) a[r][v] += b[v] * s;
      }
    }
  }
}

// Whether sum a beats the maximum m so far: greater, or (NANS: torch.amax's rule) a NaN first
template <bool NANS>
static inline ints beats(floats a, floats m) {
  return NANS ? (a > m) | ((a != a) & (m == m)) : a > m;
}

// The products of the windows at R consecutive offsets from f (xr: the first window's frames
// rows of mels values) with one block of filters, their maxima folded into m. NANS: a NaN
// product wins, at one compare more per sum. WON: won keeps the offset of each maximum, the
// first of equal ones (max_pool2d's).
template <int R, bool NANS, bool WON>
static void offsets_block(const float* __restrict xr, int mels, const float* __restrict w, int frames, int bands,
                          int f, floats* m, ints* won) {
  floats a[R][VECTORS];
  window_sums<R>(xr, mels, w, frames, bands, a);
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
#pragma GCC unroll 4
    for (int v = 0; v < VECTORS; v++) {
      ints wins = beats<NANS>(a[r][v], m[v]);
      m[v] = wins ? a[r][v] : m[v];
      if (WON) won[v] = wins ? ints{} + (f + r) : won[v];
    }
}

typedef void (*block_fn)(const float*, int, const float*, int, int, int, floats*, ints*);
#define BLOCKS(N, W)                                                                                   \
  {0,                          offsets_block<1, N, W>,  offsets_block<2, N, W>, offsets_block<3, N, W>, \
   offsets_block<4, N, W>,     offsets_block<5, N, W>,  offsets_block<6, N, W>, offsets_block<7, N, W>, \
   offsets_block<8, N, W>,     offsets_block<9, N, W>,  offsets_block<10, N, W>, offsets_block<11, N, W>, \
   offsets_block<12, N, W>}
// [nans][won][offsets in a block]
static const block_fn blocks[2][2][13] = {{BLOCKS(false, false), BLOCKS(false, true)},
                                          {BLOCKS(true, false), BLOCKS(true, true)}};

extern "C" int frequency_max_block_filters(void) { return BLOCK_FILTERS; }

// x: (batch, padded, mels), time already padded; w: the filters in blocks of BLOCK_FILTERS,
// (padded filters / BLOCK_FILTERS, frames * bands, BLOCK_FILTERS); bias: (padded filters);
// out: (batch, padded - frames + 1, filters). Computes output positions p0 to p1 of batch x
// length (a thread's share): out = max over offsets of the products, plus bias, ReLU'd
// (keeping a NaN) where relu; won (out's shape, or null): the offset each maximum came from.
// Offsets go in blocks of equal size, the last block overlapping the one before where they do
// not divide (a maximum may see an offset twice, and keeps its first).
extern "C" void frequency_max_f32(const float* x, int padded, int mels, const float* w, const float* bias, int frames,
                                  int bands, int filters, int relu, int nans, float* out, uint8_t* won, int64_t p0,
                                  int64_t p1) {
  const int offsets = mels - bands + 1, length = padded - frames + 1;
  const int nblocks = (offsets + MAX_OFFSETS - 1) / MAX_OFFSETS;
  const int R = (offsets + nblocks - 1) / nblocks;
  const block_fn fn = blocks[nans != 0][won != 0][R];
  const floats zero = floats{};
  for (int c0 = 0; c0 < filters; c0 += BLOCK_FILTERS) {
    const float* wc = w + (int64_t)c0 * frames * bands;  // this block's filters, contiguous
    floats bv[VECTORS];
    for (int v = 0; v < VECTORS; v++) bv[v] = *(const floats*)(bias + c0 + v * VECTOR_FLOATS);
    const int n = filters - c0 < BLOCK_FILTERS ? filters - c0 : BLOCK_FILTERS;
    for (int64_t p = p0; p < p1; p++) {
      const float* xr = x + ((p / length) * padded + p % length) * mels;
      floats m[VECTORS];
      ints at[VECTORS] = {};
      for (int v = 0; v < VECTORS; v++) m[v] = zero - __builtin_inff();
      for (int f0 = 0; f0 < offsets; f0 += R) {
        const int f = f0 + R <= offsets ? f0 : offsets - R;
        fn(xr + f, mels, wc, frames, bands, f, m, at);
      }
      if (won) {
        bytes first[VECTORS];
        for (int v = 0; v < VECTORS; v++) first[v] = __builtin_convertvector(at[v], bytes);
        store_block(won + p * filters + c0, first, n);
      }
      for (int v = 0; v < VECTORS; v++) {
        m[v] += bv[v];
        if (relu) m[v] = (m[v] > zero) | (m[v] != m[v]) ? m[v] : zero;
      }
      store_block(out + p * filters + c0, m, n);
    }
  }
}

// One call's arguments, for frequency_max_f32_shares.
struct f32_call {
  const float *x, *w, *bias;
  float* out;
  uint8_t* won;
  int64_t positions;
  int padded, mels, frames, bands, filters, relu, nans, shares, next;
};

// Run by every thread of a parallel region (torch's OpenMP pool): each takes the next of the
// call's shares of positions until none is left, so a smaller team still computes them all.
extern "C" void frequency_max_f32_shares(void* data) {
  f32_call* c = (f32_call*)data;
  for (int i; (i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->shares;)
    frequency_max_f32(c->x, c->padded, c->mels, c->w, c->bias, c->frames, c->bands, c->filters, c->relu, c->nans,
                      c->out, c->won, c->positions * i / c->shares, c->positions * (i + 1) / c->shares);
}

// ---- A one-channel convolution max-pooled as it is computed (vgg's first block) ----

#define POOL_ROWS (VECTOR_FLOATS == 16 ? 8 : 4)  // positions along a row summed at once

// float32 to bf16, rounding to nearest even (a NaN stays one)
static inline halves to_bf16(floats y) {
  ints u = (ints)y;
  u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16;
  u = y != y ? ints{} + 0x7FC0 : u;
  return __builtin_convertvector(u, halves);
}

// The pooled maxima of POOL_ROWS consecutive output columns (POOL_ROWS / PW pooling windows)
// for one block of filters: for each of the window's ph rows, the kh x kw products of the
// POOL_ROWS positions summed in registers, folded into their window's maximum.
template <int PW, bool NANS>
static void pooled_block(const float* __restrict xr, int cols, const float* __restrict w, int kh, int kw, int ph,
                         floats (*m)[VECTORS]) {
  constexpr int R = POOL_ROWS, G = POOL_ROWS / PW;
  for (int g = 0; g < G; g++)
    for (int v = 0; v < VECTORS; v++) m[g][v] = floats{} - __builtin_inff();
  for (int dt = 0; dt < ph; dt++) {
    floats a[R][VECTORS];
    window_sums<R>(xr + (int64_t)dt * cols, cols, w, kh, kw, a);
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
      for (int v = 0; v < VECTORS; v++) {
        floats& top = m[r / PW][v];
        top = beats<NANS>(a[r][v], top) ? a[r][v] : top;
      }
  }
}

typedef void (*pooled_fn)(const float*, int, const float*, int, int, int, floats (*)[VECTORS]);

// x: float32 (batch, rows, cols), the convolution's padding already added; w: frequency_max_f32's
// blocks of kh x kw filters; bias (padded filters); out: (batch, (rows - kh + 1) / ph, (cols - kw
// + 1) / pw, filters), float32 or (out_bf16) bf16: each non-overlapping ph x pw window's maximum
// of the convolution, plus bias. pw divides POOL_ROWS. Computes positions p0 to p1 of batch x
// pooled rows x groups of POOL_ROWS / pw pooled columns (the last group overlapping the one before).
extern "C" void pooled_max_f32(const float* x, int rows, int cols, const float* w, const float* bias, int kh, int kw,
                               int ph, int pw, int filters, int nans, int out_bf16, void* out, int64_t p0, int64_t p1) {
  const int G = POOL_ROWS / pw;
  const int out_rows = (rows - kh + 1) / ph, out_cols = (cols - kw + 1) / pw, groups = (out_cols + G - 1) / G;
  pooled_fn fn = pw == 1 ? (nans ? pooled_block<1, true> : pooled_block<1, false>)
               : pw == 2 ? (nans ? pooled_block<2, true> : pooled_block<2, false>)
                         : (nans ? pooled_block<4, true> : pooled_block<4, false>);
  for (int c0 = 0; c0 < filters; c0 += BLOCK_FILTERS) {
    const float* wc = w + (int64_t)c0 * kh * kw;
    floats bv[VECTORS];
    for (int v = 0; v < VECTORS; v++) bv[v] = *(const floats*)(bias + c0 + v * VECTOR_FLOATS);
    const int n = filters - c0 < BLOCK_FILTERS ? filters - c0 : BLOCK_FILTERS;
    for (int64_t p = p0; p < p1; p++) {
      const int64_t b = p / ((int64_t)out_rows * groups), t = p / groups % out_rows;
      const int col = (int)(p % groups) * G < out_cols - G ? (int)(p % groups) * G : out_cols - G;
      floats m[POOL_ROWS][VECTORS];
      fn(x + (b * rows + t * ph) * cols + (int64_t)col * pw, cols, wc, kh, kw, ph, m);
      for (int g = 0; g < G; g++) {
        const int64_t at = ((b * out_rows + t) * out_cols + col + g) * filters + c0;
        floats y[VECTORS];
        for (int v = 0; v < VECTORS; v++) y[v] = m[g][v] + bv[v];
        if (out_bf16) {
          halves h[VECTORS];
          for (int v = 0; v < VECTORS; v++) h[v] = to_bf16(y[v]);
          store_block((int16_t*)out + at, h, n);
        } else {
          store_block((float*)out + at, y, n);
        }
      }
    }
  }
}

// One call's arguments, for pooled_max_f32_shares.
struct pooled_call {
  const float *x, *w, *bias;
  void* out;
  int64_t positions;
  int rows, cols, kh, kw, ph, pw, filters, nans, out_bf16, shares, next;
};

extern "C" void pooled_max_f32_shares(void* data) {
  pooled_call* c = (pooled_call*)data;
  for (int i; (i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->shares;)
    pooled_max_f32(c->x, c->rows, c->cols, c->w, c->bias, c->kh, c->kw, c->ph, c->pw, c->filters, c->nans,
                   c->out_bf16, c->out, c->positions * i / c->shares, c->positions * (i + 1) / c->shares);
}

extern "C" int pooled_max_rows(void) { return POOL_ROWS; }
