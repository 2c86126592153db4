/*
 * Learned spatial embedding with one kernel per channel, for float16 channel-last
 * feature maps (hilserl_core/rl/networks.py, SpatialLearnedEmbedding, k = 1), with
 * the image head's dropout fused in:
 *
 *   forward:          out[b, c] = m[b, c] * sum_p x[b, p, c] * w[p, c]
 *   kernel gradient:  gw[p, c]  = sum_b x[b, p, c] * m[b, c] * g[b, c]
 *
 * m[b, c] is 0 (dropped) or `scale` (= 1 / (1 - p)), from a counter-based hash
 * of (seed, b * C + c): forward and backward regenerate the same mask from the
 * seed, so none is stored. threshold = round(p * 2^32); 0 means no dropout.
 *
 * x is float16 (the feature cache's dtype) and is converted to float32 in
 * registers (F16C): the 4 MB input of a 256-row batch is read once per pass and
 * never materialised in float32. Accumulation is float32. Loaded by
 * hilserl_core/accel/native.py, which compiles this file with the system C compiler;
 * torch's OpenMP runtime provides the threads.
 *
 * Requires AVX2 + FMA + F16C and C % 32 == 0 (native.py checks both).
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define LOAD_F16x8(ptr) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ptr)))

/* "lowbias32" integer hash (C. Wellons), eight lanes at once */
static inline __m256i hash8(__m256i h) {
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(0x7feb352d));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 15));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0x846ca68bu));
  return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

/* mask factor (0 or scale) for the 8 elements starting at flat index i */
static inline __m256 mask8(uint32_t i, uint32_t s1, uint32_t s2, __m256i threshold_signed, __m256 scale) {
  __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256i h = hash8(_mm256_add_epi32(hash8(_mm256_xor_si256(idx, _mm256_set1_epi32((int)s1))), _mm256_set1_epi32((int)s2)));
  /* unsigned h < threshold, via signed compare after flipping the sign bits */
  __m256i dropped = _mm256_cmpgt_epi32(threshold_signed, _mm256_xor_si256(h, _mm256_set1_epi32((int)0x80000000u)));
  return _mm256_andnot_ps(_mm256_castsi256_ps(dropped), scale);
}

void hilserl_spatial_forward(const uint16_t *x, const float *w, float *out, long B, long P, long C, int threads,
                             uint64_t seed, uint32_t threshold, float scale) {
  const uint32_t s1 = (uint32_t)seed, s2 = (uint32_t)(seed >> 32);
  const __m256i t = _mm256_set1_epi32((int)(threshold ^ 0x80000000u));
  const __m256 sc = _mm256_set1_ps(scale);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long b = 0; b < B; ++b) {
    const uint16_t *xb = x + b * P * C;
    float *o = out + b * C;
    /* four independent accumulators hide the FMA latency along p */
    for (long c = 0; c < C; c += 32) {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (long p = 0; p < P; ++p) {
        const uint16_t *xp = xb + p * C + c;
        const float *wp = w + p * C + c;
        a0 = _mm256_fmadd_ps(LOAD_F16x8(xp), _mm256_loadu_ps(wp), a0);
        a1 = _mm256_fmadd_ps(LOAD_F16x8(xp + 8), _mm256_loadu_ps(wp + 8), a1);
        a2 = _mm256_fmadd_ps(LOAD_F16x8(xp + 16), _mm256_loadu_ps(wp + 16), a2);
        a3 = _mm256_fmadd_ps(LOAD_F16x8(xp + 24), _mm256_loadu_ps(wp + 24), a3);
      }
      if (threshold) {
        uint32_t i = (uint32_t)(b * C + c);
        a0 = _mm256_mul_ps(a0, mask8(i, s1, s2, t, sc));
        a1 = _mm256_mul_ps(a1, mask8(i + 8, s1, s2, t, sc));
        a2 = _mm256_mul_ps(a2, mask8(i + 16, s1, s2, t, sc));
        a3 = _mm256_mul_ps(a3, mask8(i + 24, s1, s2, t, sc));
      }
      _mm256_storeu_ps(o + c, a0);
      _mm256_storeu_ps(o + c + 8, a1);
      _mm256_storeu_ps(o + c + 16, a2);
      _mm256_storeu_ps(o + c + 24, a3);
    }
  }
}

/* g <- m * g in place (the dropout's backward), g [B, C] */
void hilserl_dropout_backward(float *g, long B, long C, int threads, uint64_t seed, uint32_t threshold, float scale) {
  if (!threshold) return;
  const uint32_t s1 = (uint32_t)seed, s2 = (uint32_t)(seed >> 32);
  const __m256i t = _mm256_set1_epi32((int)(threshold ^ 0x80000000u));
  const __m256 sc = _mm256_set1_ps(scale);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long b = 0; b < B; ++b)
    for (long c = 0; c < C; c += 8) {
      float *gp = g + b * C + c;
      _mm256_storeu_ps(gp, _mm256_mul_ps(_mm256_loadu_ps(gp), mask8((uint32_t)(b * C + c), s1, s2, t, sc)));
    }
}

void hilserl_spatial_kernel_grad(const uint16_t *x, const float *g, float *gw, long B, long P, long C, int threads) {
  /* one row of gw per task: it stays in L1 while the batch streams past */
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long p = 0; p < P; ++p) {
    float *k = gw + p * C;
    memset(k, 0, sizeof(float) * (size_t)C);
    for (long b = 0; b < B; ++b) {
      const uint16_t *xp = x + (b * P + p) * C;
      const float *gb = g + b * C;
      for (long c = 0; c < C; c += 8)
        _mm256_storeu_ps(k + c, _mm256_fmadd_ps(LOAD_F16x8(xp + c), _mm256_loadu_ps(gb + c), _mm256_loadu_ps(k + c)));
    }
  }
}
