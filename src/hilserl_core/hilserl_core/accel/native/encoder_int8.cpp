/*
 * The int8 frozen ResNet-10's whole forward pass as one torch operator,
 * torch.ops.hilserl.resnet10_int8 (hilserl_core/vision/encoders.py, compute_dtype "int8").
 *
 * The Python forward (accel/int8_encoder.py, forward) makes about thirty calls:
 * oneDNN int8 convolutions and the GroupNorm / max-pool kernels of groupnorm.c.
 * Each call releases the GIL and takes it back, and with two encoder threads in
 * the actor each take can wait for the other thread's Python code between its
 * calls (DESIGN.md, "The actor's frame set on two cores"). Called as one
 * operator, the whole pass runs without the GIL.
 *
 * It calls the same operators and kernels, with the same arguments and thread
 * counts, in the same order as the Python forward, so its features are the same
 * bit for bit (tests/core/test_encoders.py checks it). Everything that depends
 * only on the weights and the image size (packed int8 weights, paddings, the
 * stem's constant map) is prepared by the Python side as a named structure
 * (accel/int8_encoder.py, OperatorPlan) and passed in as two flat lists, written
 * by its tensors() and ints():
 *
 *   tensors: stem packed weights, weight scales, weight zero points, constant map,
 *            norm gamma, norm beta; then per block: conv1 (packed, scales, zero
 *            points), norm1 (gamma, beta), conv2 (3), norm2 (2), and for blocks
 *            with a projection shortcut proj conv (3) and proj norm (2).
 *   plan:    groups, blocks, stem zero point, stem stride, stem pad, pool kernel,
 *            pool stride, pool top, pool bottom, pool left, pool right; then per
 *            block: has projection, and for conv1, conv2 and proj (zeros when
 *            absent) stride, top, bottom, left, right.
 */
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

extern "C" {
void hilserl_groupnorm_act(const void *a, int a_f32, const float *pre, const float *ga, const float *ba,
                           const uint16_t *r, const float *gr, const float *br, int res_mode, uint16_t *y, uint8_t *q,
                           long N, long HW, long C, int G, float eps, int relu, int threads);
void hilserl_maxpool_u16(const uint16_t *x, long N, long H, long W, long C, int k, int s, int top, int left,
                         uint16_t *y, long OH, long OW, uint8_t *q, int threads);
}

namespace {

constexpr int64_t kOutBf16 = 1, kOutU8 = 2;  // which outputs a norm writes

struct Cursor {  // reads the tensors and the plan in order
  const std::vector<at::Tensor> &t;
  c10::IntArrayRef plan;
  size_t ti = 0, pi = 0;
  const at::Tensor &tensor() {
    TORCH_CHECK(ti < t.size(), "resnet10_int8: too few tensors");
    return t[ti++];
  }
  int64_t next() {
    TORCH_CHECK(pi < plan.size(), "resnet10_int8: plan too short");
    return plan[pi++];
  }
};

struct Conv {
  at::Tensor packed, scales, zero_points;
  int64_t stride, top, bottom, left, right;
};

struct Norm {
  at::Tensor gamma, beta;
};

Conv read_conv(Cursor &c, bool present = true) {
  Conv conv;
  if (present) {
    conv.packed = c.tensor();
    conv.scales = c.tensor();
    conv.zero_points = c.tensor();
  }
  conv.stride = c.next();
  conv.top = c.next();
  conv.bottom = c.next();
  conv.left = c.next();
  conv.right = c.next();
  return conv;
}

Norm read_norm(Cursor &c) {
  Norm n;
  n.gamma = c.tensor();
  n.beta = c.tensor();
  TORCH_CHECK(n.gamma.scalar_type() == at::kFloat && n.gamma.is_contiguous() && n.beta.scalar_type() == at::kFloat &&
                  n.beta.is_contiguous(),
              "resnet10_int8: norm parameters must be contiguous float32");
  return n;
}

// onednn::qconv2d_pointwise with input scale 1: the exact integer sums times the weight scales, bfloat16
at::Tensor qconv(const at::Tensor &xq, int64_t zero_point, const Conv &conv, int64_t pad_h, int64_t pad_w) {
  static const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("onednn::qconv2d_pointwise", "");
  torch::jit::Stack stack;
  stack.reserve(17);
  stack.emplace_back(xq);
  stack.emplace_back(1.0);
  stack.emplace_back(zero_point);
  stack.emplace_back(conv.packed);
  stack.emplace_back(conv.scales);
  stack.emplace_back(conv.zero_points);
  stack.emplace_back(c10::IValue());  // bias
  stack.emplace_back(c10::List<int64_t>({conv.stride, conv.stride}));
  stack.emplace_back(c10::List<int64_t>({pad_h, pad_w}));
  stack.emplace_back(c10::List<int64_t>({1, 1}));
  stack.emplace_back(int64_t{1});  // groups
  stack.emplace_back(1.0);         // output scale
  stack.emplace_back(int64_t{0});  // output zero point
  stack.emplace_back(at::kBFloat16);
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<std::optional<at::Scalar>>());
  stack.emplace_back(c10::IValue());  // algorithm
  op.callBoxed(&stack);
  return stack.back().toTensor();
}

// int8_encoder.conv_int8: oneDNN pads symmetric paddings itself (with the zero point);
// an asymmetric one is a zero-padded copy first
at::Tensor conv_u8(const at::Tensor &xq, const Conv &conv) {
  if (conv.top == conv.bottom && conv.left == conv.right) return qconv(xq, 0, conv, conv.top, conv.left);
  return qconv(at::constant_pad_nd(xq, {conv.left, conv.right, conv.top, conv.bottom}, 0), 0, conv, 0, 0);
}

const uint16_t *bf16_ptr(const at::Tensor &t) { return reinterpret_cast<const uint16_t *>(t.const_data_ptr()); }

void check_map(const at::Tensor &t, const char *what) {
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast), "resnet10_int8: ", what,
              " must be a channels-last [N, C, H, W] map, got sizes ", t.sizes());
}

// groupnorm.c's one pass: relu(norm(x + pre) + shortcut), as bfloat16 (y), uint8 (q) or both
void norm_act(const at::Tensor &x, const Norm &norm, const at::Tensor *pre, const at::Tensor *residual,
              const Norm *residual_norm, int64_t outputs, int64_t groups, double eps, at::Tensor *y, at::Tensor *q) {
  check_map(x, "a GroupNorm input");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, "resnet10_int8: GroupNorm input must be bfloat16");
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor res;
  if (residual != nullptr) {
    res = residual->to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast);
    TORCH_CHECK(res.sizes() == x.sizes(), "resnet10_int8: shortcut shape ", res.sizes(), " != ", x.sizes());
  }
  const int mode = residual == nullptr ? 0 : (residual_norm != nullptr ? 2 : 1);
  const Norm &rn = residual_norm != nullptr ? *residual_norm : norm;
  if (outputs & kOutBf16) *y = at::empty({n, c, h, w}, x.options().dtype(at::kBFloat16), at::MemoryFormat::ChannelsLast);
  if (outputs & kOutU8) *q = at::empty({n, c, h, w}, x.options().dtype(at::kByte), at::MemoryFormat::ChannelsLast);
  hilserl_groupnorm_act(x.const_data_ptr(), 0, pre != nullptr ? pre->const_data_ptr<float>() : nullptr,
                        norm.gamma.const_data_ptr<float>(), norm.beta.const_data_ptr<float>(),
                        residual != nullptr ? bf16_ptr(res) : nullptr, rn.gamma.const_data_ptr<float>(),
                        rn.beta.const_data_ptr<float>(), mode,
                        (outputs & kOutBf16) ? reinterpret_cast<uint16_t *>(y->mutable_data_ptr()) : nullptr,
                        (outputs & kOutU8) ? q->mutable_data_ptr<uint8_t>() : nullptr, n, h * w, c, static_cast<int>(groups),
                        static_cast<float>(eps), 1, at::get_num_threads());
}

at::Tensor resnet10_int8(const at::Tensor &images, const std::vector<at::Tensor> &tensors, c10::IntArrayRef plan, double eps) {
  TORCH_CHECK(images.device().is_cpu() && images.scalar_type() == at::kByte && images.dim() == 4 && images.size(3) == 3,
              "resnet10_int8: images must be uint8 [B, H, W, 3] on the CPU, got ", images.sizes());
  at::NoGradGuard no_grad;
  Cursor cur{tensors, plan};
  const int64_t groups = cur.next(), blocks = cur.next(), stem_zero_point = cur.next();
  Conv stem;
  stem.packed = cur.tensor();
  stem.scales = cur.tensor();
  stem.zero_points = cur.tensor();
  const at::Tensor &pre = cur.tensor();
  const Norm stem_norm = read_norm(cur);
  stem.stride = cur.next();
  stem.top = stem.bottom = stem.left = stem.right = cur.next();
  const int64_t pool_k = cur.next(), pool_s = cur.next(), pool_top = cur.next(), pool_bottom = cur.next(),
                pool_left = cur.next(), pool_right = cur.next();

  // the uint8 pixels viewed as NCHW are already channels-last: the stem's int8 input as they are
  const at::Tensor pixels = images.contiguous().permute({0, 3, 1, 2});
  at::Tensor stem_out = qconv(pixels, stem_zero_point, stem, stem.top, stem.left);
  check_map(pre, "the stem's constant map");
  TORCH_CHECK(pre.scalar_type() == at::kFloat && pre.size(0) == 1 && pre.sizes().slice(1) == stem_out.sizes().slice(1),
              "resnet10_int8: the stem's constant map must be float32 [1, C, H, W] of the stem's output size");
  at::Tensor y, q;
  norm_act(stem_out, stem_norm, &pre, nullptr, nullptr, kOutBf16, groups, eps, &y, &q);

  const int64_t n = y.size(0), c = y.size(1), h = y.size(2), w = y.size(3);
  TORCH_CHECK(c % 16 == 0, "resnet10_int8: the max pool needs channels % 16 == 0");
  const int64_t oh = (h + pool_top + pool_bottom - pool_k) / pool_s + 1, ow = (w + pool_left + pool_right - pool_k) / pool_s + 1;
  at::Tensor x = at::empty({n, c, oh, ow}, y.options(), at::MemoryFormat::ChannelsLast);
  at::Tensor xq = at::empty({n, c, oh, ow}, y.options().dtype(at::kByte), at::MemoryFormat::ChannelsLast);
  hilserl_maxpool_u16(bf16_ptr(y), n, h, w, c, static_cast<int>(pool_k), static_cast<int>(pool_s), static_cast<int>(pool_top),
                      static_cast<int>(pool_left), reinterpret_cast<uint16_t *>(x.mutable_data_ptr()), oh, ow,
                      xq.mutable_data_ptr<uint8_t>(), at::get_num_threads());

  // per block: is there a projection shortcut (read ahead: what the next block needs decides this block's outputs)
  std::vector<bool> proj(blocks);
  std::vector<Conv> conv1(blocks), conv2(blocks), pconv(blocks);
  std::vector<Norm> norm1(blocks), norm2(blocks), pnorm(blocks);
  for (int64_t b = 0; b < blocks; ++b) {
    proj[b] = cur.next() != 0;
    conv1[b] = read_conv(cur);
    norm1[b] = read_norm(cur);
    conv2[b] = read_conv(cur);
    norm2[b] = read_norm(cur);
    pconv[b] = read_conv(cur, proj[b]);
    if (proj[b]) pnorm[b] = read_norm(cur);
  }
  TORCH_CHECK(cur.ti == tensors.size() && cur.pi == plan.size(), "resnet10_int8: ", tensors.size() - cur.ti,
              " tensors and ", plan.size() - cur.pi, " plan entries left over");

  for (int64_t b = 0; b < blocks; ++b) {
    const bool last = b == blocks - 1;
    // the bfloat16 map is needed only as an identity shortcut or as the features
    const int64_t outputs = last ? kOutBf16 : (proj[b + 1] ? kOutU8 : (kOutBf16 | kOutU8));
    at::Tensor hq, unused;
    norm_act(conv_u8(xq, conv1[b]), norm1[b], nullptr, nullptr, nullptr, kOutU8, groups, eps, &unused, &hq);
    at::Tensor c2 = conv_u8(hq, conv2[b]);
    at::Tensor nx, nxq;
    if (proj[b]) {
      at::Tensor shortcut = conv_u8(xq, pconv[b]);
      norm_act(c2, norm2[b], nullptr, &shortcut, &pnorm[b], outputs, groups, eps, &nx, &nxq);
    } else {
      TORCH_CHECK(x.defined(), "resnet10_int8: an identity shortcut needs the bfloat16 map");
      norm_act(c2, norm2[b], nullptr, &x, nullptr, outputs, groups, eps, &nx, &nxq);
    }
    x = nx;
    xq = nxq;
  }
  return x.permute({0, 2, 3, 1}).to(at::kFloat).contiguous();
}

}  // namespace

TORCH_LIBRARY(hilserl, m) {
  m.def("resnet10_int8(Tensor images, Tensor[] tensors, int[] plan, float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(hilserl, CompositeExplicitAutograd, m) { m.impl("resnet10_int8", &resnet10_int8); }
