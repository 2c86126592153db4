/*
 * GroupNorm + shortcut + ReLU in one pass, for the frozen ResNet-10's bfloat16
 * channel-last maps (hilserl_core/encoders.py, inference only):
 *
 *   y = act( GN(a; ga, ba) + s )    s = 0 (res_mode 0), r (1) or GN(r; gr, br) (2)
 *
 * a, r, y: bfloat16 [N, HW, C] (NHWC), C channels in G groups of C / G adjacent
 * channels; ga, ba, gr, br: float32 [C]; act = ReLU when relu != 0. Statistics and
 * arithmetic are float32 (per-chunk float32 sums, added up in double); y is rounded
 * to bfloat16 once (round to nearest even), where torch rounds each op's result.
 * torch runs the same block as 3-5 passes over the map (norm, add, relu, each with
 * its own bfloat16 conversions).
 *
 * Requires AVX2 + FMA and C % 8 == 0, (C / G) % 8 == 0 (native.py checks them).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

static inline __m256 load_bf16x8(const uint16_t *p) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static inline void store_bf16x8(uint16_t *p, __m256 v) {
  __m256i b = _mm256_castps_si256(v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  b = _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
  b = _mm256_srli_epi32(b, 16);
  __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
  _mm_storeu_si128((__m128i *)p, packed);
}

/* per-(n, c) scale and shift of GroupNorm: y = x * scale + shift */
static void gn_affine(const uint16_t *x, const float *gamma, const float *beta, long HW, long C, int G, float eps,
                      float *scale, float *shift, float *acc /* 2 * C floats of scratch */) {
  const long CG = C / G;
  double *sum = (double *)calloc((size_t)(2 * C), sizeof(double));
  double *sq = sum + C;
  const long CHUNK = 64; /* float32 partial sums over 64 pixels, then double */
  for (long p0 = 0; p0 < HW; p0 += CHUNK) {
    const long p1 = p0 + CHUNK < HW ? p0 + CHUNK : HW;
    for (long c = 0; c < C; c += 8) {
      __m256 s = _mm256_setzero_ps(), q = _mm256_setzero_ps();
      for (long p = p0; p < p1; ++p) {
        __m256 v = load_bf16x8(x + p * C + c);
        s = _mm256_add_ps(s, v);
        q = _mm256_fmadd_ps(v, v, q);
      }
      _mm256_storeu_ps(acc + c, s);
      _mm256_storeu_ps(acc + C + c, q);
    }
    for (long c = 0; c < C; ++c) {
      sum[c] += acc[c];
      sq[c] += acc[C + c];
    }
  }
  const double n = (double)HW * (double)CG;
  for (int g = 0; g < G; ++g) {
    double s = 0.0, q = 0.0;
    for (long c = g * CG; c < (g + 1) * CG; ++c) {
      s += sum[c];
      q += sq[c];
    }
    const double mean = s / n;
    double var = q / n - mean * mean;
    if (var < 0.0) var = 0.0;
    const float rstd = (float)(1.0 / __builtin_sqrt(var + (double)eps));
    for (long c = g * CG; c < (g + 1) * CG; ++c) {
      scale[c] = gamma[c] * rstd;
      shift[c] = beta[c] - (float)mean * scale[c];
    }
  }
  free(sum);
}

void hilserl_groupnorm_act(const uint16_t *a, const float *ga, const float *ba, const uint16_t *r, const float *gr,
                           const float *br, int res_mode, uint16_t *y, long N, long HW, long C, int G, float eps,
                           int relu, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long n = 0; n < N; ++n) {
    float *buf = (float *)malloc(sizeof(float) * (size_t)(6 * C));
    float *sa = buf, *ta = buf + C, *sr = buf + 2 * C, *tr = buf + 3 * C, *acc = buf + 4 * C;
    const uint16_t *an = a + n * HW * C;
    const uint16_t *rn = r ? r + n * HW * C : 0;
    uint16_t *yn = y + n * HW * C;
    gn_affine(an, ga, ba, HW, C, G, eps, sa, ta, acc);
    if (res_mode == 2) gn_affine(rn, gr, br, HW, C, G, eps, sr, tr, acc);
    const __m256 zero = _mm256_setzero_ps();
    for (long p = 0; p < HW; ++p) {
      for (long c = 0; c < C; c += 8) {
        __m256 v = _mm256_fmadd_ps(load_bf16x8(an + p * C + c), _mm256_loadu_ps(sa + c), _mm256_loadu_ps(ta + c));
        if (res_mode == 1) {
          v = _mm256_add_ps(v, load_bf16x8(rn + p * C + c));
        } else if (res_mode == 2) {
          v = _mm256_add_ps(v, _mm256_fmadd_ps(load_bf16x8(rn + p * C + c), _mm256_loadu_ps(sr + c), _mm256_loadu_ps(tr + c)));
        }
        if (relu) v = _mm256_max_ps(v, zero);
        store_bf16x8(yn + p * C + c, v);
      }
    }
    free(buf);
  }
}
