/*
 * GroupNorm + shortcut + ReLU in one pass, for the frozen ResNet-10's channel-last
 * maps (hilserl_core/vision/encoders.py, inference only):
 *
 *   y = act( GN(a + pre; ga, ba) + s )    s = 0 (res_mode 0), r (1) or GN(r; gr, br) (2)
 *
 * a: bfloat16 or float32 (a_f32) [N, HW, C] (NHWC), C channels in G groups of C / G
 * adjacent channels; pre: optional float32 [HW, C] added to every image before the
 * norm (the int8 stem's constant normalisation term); r: bfloat16 [N, HW, C];
 * ga, ba, gr, br: float32 [C]; act = ReLU when relu != 0. Statistics and arithmetic
 * are float32 (per-chunk float32 sums, added up in double). Outputs, either or both:
 *
 *   y: bfloat16, rounded once (round to nearest even), where torch rounds each op's result;
 *   q: uint8, q = round(y * 255 / max(y of that image)) (0 where the image's max is <= 0):
 *      the input of the next int8 convolution. Every such convolution feeds a GroupNorm,
 *      which cancels the per-image scale, so the scale itself is not returned.
 *
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

static inline __m256 load8(const void *x, int f32, long i) {
  return f32 ? _mm256_loadu_ps((const float *)x + i) : load_bf16x8((const uint16_t *)x + i);
}

/* a + pre at element p * C + c (pre indexed by the pixel within the image) */
static inline __m256 load_in(const void *x, int f32, const float *pre, long p, long C, long c) {
  __m256 v = load8(x, f32, p * C + c);
  return pre ? _mm256_add_ps(v, _mm256_loadu_ps(pre + p * C + c)) : v;
}

/* uint8 = round(v * k), saturated; 8 lanes stored as 8 bytes */
static inline void store_u8x8(uint8_t *p, __m256 v, __m256 k) {
  __m256i i = _mm256_cvtps_epi32(_mm256_mul_ps(v, k)); /* round to nearest even */
  __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
  _mm_storel_epi64((__m128i *)p, _mm_packus_epi16(w, w));
}

static inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

/* per-(n, c) scale and shift of GroupNorm: y = (x + pre) * scale + shift */
static void gn_affine(const void *x, int f32, const float *pre, const float *gamma, const float *beta, long HW, long C, int G, float eps,
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
        __m256 v = load_in(x, f32, pre, p, C, c);
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

void hilserl_groupnorm_act(const void *a, int a_f32, const float *pre, const float *ga, const float *ba,
                           const uint16_t *r, const float *gr, const float *br, int res_mode, uint16_t *y, uint8_t *q,
                           long N, long HW, long C, int G, float eps, int relu, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long n = 0; n < N; ++n) {
    float *buf = (float *)malloc(sizeof(float) * (size_t)(6 * C));
    float *sa = buf, *ta = buf + C, *sr = buf + 2 * C, *tr = buf + 3 * C, *acc = buf + 4 * C;
    const void *an = a_f32 ? (const void *)((const float *)a + n * HW * C) : (const void *)((const uint16_t *)a + n * HW * C);
    const uint16_t *rn = r ? r + n * HW * C : 0;
    gn_affine(an, a_f32, pre, ga, ba, HW, C, G, eps, sa, ta, acc);
    if (res_mode == 2) gn_affine(rn, 0, 0, gr, br, HW, C, G, eps, sr, tr, acc);
    const __m256 zero = _mm256_setzero_ps();
    __m256 vmax = zero;
    /* pass 1 writes y and finds the image's max; pass 2 (uint8 only) recomputes and quantises */
    for (int pass = 0; pass < (q ? 2 : 1); ++pass) {
      const __m256 k = _mm256_set1_ps(pass == 1 && hmax8(vmax) > 0.0f ? 255.0f / hmax8(vmax) : 0.0f);
      for (long p = 0; p < HW; ++p) {
        for (long c = 0; c < C; c += 8) {
          __m256 v = _mm256_fmadd_ps(load_in(an, a_f32, pre, p, C, c), _mm256_loadu_ps(sa + c), _mm256_loadu_ps(ta + c));
          if (res_mode == 1) {
            v = _mm256_add_ps(v, load_bf16x8(rn + p * C + c));
          } else if (res_mode == 2) {
            v = _mm256_add_ps(v, _mm256_fmadd_ps(load_bf16x8(rn + p * C + c), _mm256_loadu_ps(sr + c), _mm256_loadu_ps(tr + c)));
          }
          if (relu) v = _mm256_max_ps(v, zero);
          if (pass == 0) {
            if (y) store_bf16x8(y + n * HW * C + p * C + c, v);
            vmax = _mm256_max_ps(vmax, v);
          } else {
            store_u8x8(q + n * HW * C + p * C + c, v, k);
          }
        }
      }
    }
    free(buf);
  }
}

/* q = round(x * 255 / max x) over one bfloat16 image x of M values (M % 8 == 0); negatives become 0 */
static void quantize_image(const uint16_t *x, long M, uint8_t *q) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 vmax = zero;
  for (long i = 0; i < M; i += 8) vmax = _mm256_max_ps(vmax, load_bf16x8(x + i));
  const float m = hmax8(vmax);
  const __m256 k = _mm256_set1_ps(m > 0.0f ? 255.0f / m : 0.0f);
  for (long i = 0; i < M; i += 8) store_u8x8(q + i, _mm256_max_ps(load_bf16x8(x + i), zero), k);
}

/* quantize_image for each of N images [N, M] */
void hilserl_quantize_u8(const uint16_t *x, long N, long M, uint8_t *q, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long n = 0; n < N; ++n) quantize_image(x + n * M, M, q + n * M);
}

/*
 * Max pool (k x k, stride s) of a non-negative bfloat16 NHWC map [N, H, W, C] into y [N, OH, OW, C],
 * windows starting at (oy * s - top, ox * s - left) and clipped to the map (padding never wins),
 * plus, when q is given, the pooled map quantised per image as hilserl_quantize_u8 does. Non-negative
 * bfloat16 values order like their bit patterns read as signed 16-bit integers, and negative ones
 * (sign bit set, -0.0 included) read as negative integers, so the max is taken on 16 channels at once
 * as signed 16-bit integers starting from 0: exact for non-negative maps, and anything negative
 * becomes +0. C % 16 == 0.
 */
void hilserl_maxpool_u16(const uint16_t *x, long N, long H, long W, long C, int k, int s, int top, int left,
                         uint16_t *y, long OH, long OW, uint8_t *q, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long n = 0; n < N; ++n) {
    const uint16_t *xn = x + n * H * W * C;
    uint16_t *yn = y + n * OH * OW * C;
    for (long oy = 0; oy < OH; ++oy) {
      const long y0 = oy * s - top, y1 = y0 + k;
      for (long ox = 0; ox < OW; ++ox) {
        const long x0 = ox * s - left, x1 = x0 + k;
        for (long c = 0; c < C; c += 16) {
          __m256i m = _mm256_setzero_si256();
          for (long iy = y0 < 0 ? 0 : y0; iy < (y1 < H ? y1 : H); ++iy)
            for (long ix = x0 < 0 ? 0 : x0; ix < (x1 < W ? x1 : W); ++ix)
              m = _mm256_max_epi16(m, _mm256_loadu_si256((const __m256i *)(xn + (iy * W + ix) * C + c)));
          _mm256_storeu_si256((__m256i *)(yn + (oy * OW + ox) * C + c), m);
        }
      }
    }
    if (q) quantize_image(yn, OH * OW * C, q + n * OH * OW * C); /* the pooled image, still in cache */
  }
}
