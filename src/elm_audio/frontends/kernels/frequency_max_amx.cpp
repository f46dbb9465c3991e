// frequency_max.cpp's maximum in bf16 on Intel's matrix units (AMX): each tile product
// multiplies the windows at up to 16 offsets (the tile's rows, up to 32 bands each, loaded as
// overlapping runs of the spectrogram's row, 2 bytes apart) by 16 filters, summing in float32;
// two positions x two blocks of 16 filters at a time (4 accumulator tiles), whose rows are then
// maximized on the vector units. Built only where the CPU reports amx_bf16 (frontends/compiled.py).
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct tile_config {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Linux hands a process the matrix units' state only when asked (arch_prctl
// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); 0 where it did.
extern "C" int frequency_max_amx_enable(void) { return (int)syscall(SYS_arch_prctl, 0x1023, 18); }

// x: bf16 (batch, padded, mels), time already padded, with 64 readable values after its end,
// every value finite (a window's last tile may read past its bands, where the filters are zero);
// w: bf16 (blocks of 16 filters, frames, chunks, kc / 2 pairs of bands, 16 filters, 2): a
// window's bands in the fewest chunks of at most 32, kc each (38 bands: 2 x 20, not 2 x 32:
// 5-13% faster per layer), zero past the bands and the filters; bias: float32 (filters padded to 32); out: bf16
// (batch, padded - frames + 1, filters); won (out's shape, or null): the offset each maximum
// came from, the first of equal ones. Computes positions p0 to p1 of batch x length.
extern "C" void frequency_max_amx(const uint16_t* x, int padded, int mels, const uint16_t* w, const float* bias,
                                  int frames, int bands, int filters, int relu, uint16_t* out, uint8_t* won, int64_t p0,
                                  int64_t p1) {
  const int offsets = mels - bands + 1, length = padded - frames + 1;
  const int R = offsets < 16 ? offsets : 16;
  const int chunks = (bands + 31) / 32;
  const int kc = ((bands + chunks - 1) / chunks + 1) & ~1;  // bands a tile takes: even, at most 32
  tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {  // 0-3 sums (16 floats a row), 4-5 windows (kc bands), 6-7 filters (kc / 2 pairs)
    cfg.rows[t] = t < 6 ? R : kc / 2;
    cfg.colsb[t] = t < 4 || t > 5 ? 64 : 2 * kc;
  }
  _tile_loadconfig(&cfg);
  alignas(64) float sums[4][16][16];
  const int64_t tile_values = (int64_t)kc * 16, per_block = (int64_t)frames * chunks * tile_values;
  const __m512 zero = _mm512_setzero_ps();
  for (int fb = 0; fb < filters; fb += 32) {
    const uint16_t* w0 = w + (int64_t)(fb / 16) * per_block;
    const uint16_t* w1 = w0 + per_block;
    const __m512 b0 = _mm512_loadu_ps(bias + fb), b1 = _mm512_loadu_ps(bias + fb + 16);
    const int n0 = filters - fb < 16 ? filters - fb : 16, n1 = filters - fb - 16 < 0 ? 0 : (filters - fb - 16 < 16 ? filters - fb - 16 : 16);
    const __mmask16 k0 = (__mmask16)((1u << n0) - 1), k1 = (__mmask16)((1u << n1) - 1);
    for (int64_t p = p0; p < p1; p += 2) {
      const int64_t q = p + 1 < p1 ? p + 1 : p;  // an odd share's last position computed twice
      const uint16_t* x0 = x + ((p / length) * padded + p % length) * mels;
      const uint16_t* x1 = x + ((q / length) * padded + q % length) * mels;
      __m512 m[4];
      __m512i at[4];  // with won: the offset of each maximum, the first of equal ones
      for (int k = 0; k < 4; k++) {
        m[k] = _mm512_set1_ps(-__builtin_inff());
        at[k] = _mm512_setzero_si512();
      }
      for (int f0 = 0; f0 < offsets; f0 += R) {
        const int f = f0 + R <= offsets ? f0 : offsets - R;  // the last block overlaps the one before
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int j = 0; j < frames; j++) {
          for (int c = 0; c < chunks; c++) {
            const int64_t at = (int64_t)j * mels + f + kc * c, wat = ((int64_t)j * chunks + c) * tile_values;
            _tile_loadd(4, x0 + at, 2);
            _tile_loadd(5, x1 + at, 2);
            _tile_loadd(6, w0 + wat, 64);
            _tile_loadd(7, w1 + wat, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
        _tile_stored(0, sums[0], 64);
        _tile_stored(1, sums[1], 64);
        _tile_stored(2, sums[2], 64);
        _tile_stored(3, sums[3], 64);
        if (won) {
          for (int k = 0; k < 4; k++)
            for (int r = 0; r < R; r++) {
              const __m512 v = _mm512_load_ps(sums[k][r]);
              const __mmask16 wins = _mm512_cmp_ps_mask(v, m[k], _CMP_GT_OQ);
              m[k] = _mm512_mask_blend_ps(wins, m[k], v);
              at[k] = _mm512_mask_blend_epi32(wins, at[k], _mm512_set1_epi32(f + r));
            }
        } else {
          for (int k = 0; k < 4; k++)
            for (int r = 0; r < R; r++) m[k] = _mm512_max_ps(m[k], _mm512_load_ps(sums[k][r]));
        }
      }
      __m512 y[4] = {_mm512_add_ps(m[0], b0), _mm512_add_ps(m[1], b1), _mm512_add_ps(m[2], b0), _mm512_add_ps(m[3], b1)};
      if (relu)
        for (int k = 0; k < 4; k++) y[k] = _mm512_max_ps(y[k], zero);
      uint16_t* o0 = out + p * filters + fb;
      uint16_t* o1 = out + q * filters + fb;
      _mm256_mask_storeu_epi16(o0, k0, (__m256i)_mm512_cvtneps_pbh(y[0]));
      _mm256_mask_storeu_epi16(o0 + 16, k1, (__m256i)_mm512_cvtneps_pbh(y[1]));
      _mm256_mask_storeu_epi16(o1, k0, (__m256i)_mm512_cvtneps_pbh(y[2]));
      _mm256_mask_storeu_epi16(o1 + 16, k1, (__m256i)_mm512_cvtneps_pbh(y[3]));
      if (won) {
        _mm512_mask_cvtepi32_storeu_epi8(won + p * filters + fb, k0, at[0]);
        _mm512_mask_cvtepi32_storeu_epi8(won + p * filters + fb + 16, k1, at[1]);
        _mm512_mask_cvtepi32_storeu_epi8(won + q * filters + fb, k0, at[2]);
        _mm512_mask_cvtepi32_storeu_epi8(won + q * filters + fb + 16, k1, at[3]);
      }
    }
  }
  _tile_release();
}

// One call's arguments, for frequency_max_amx_shares.
struct amx_call {
  const uint16_t* x;
  const uint16_t* w;
  const float* bias;
  uint16_t* out;
  uint8_t* won;
  int64_t positions;
  int padded, mels, frames, bands, filters, relu, shares, next;
};

// Run by every thread of a parallel region (torch's OpenMP pool): each takes the next of the
// call's shares of positions until none is left, so a smaller team still computes them all.
extern "C" void frequency_max_amx_shares(void* data) {
  amx_call* c = (amx_call*)data;
  for (int i; (i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->shares;)
    frequency_max_amx(c->x, c->padded, c->mels, c->w, c->bias, c->frames, c->bands, c->filters, c->relu, c->out, c->won,
                      c->positions * i / c->shares, c->positions * (i + 1) / c->shares);
}
