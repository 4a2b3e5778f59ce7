// scaled_dot_product_attention: checks, then one fused kernel (no Sq x Sk matrix in memory).

#include <cmath>

#include "ops/cpu/blas.h"
#include "ops/op_common.h"

namespace streampool {

using namespace detail;

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_padding_mask,
                                    bool causal, std::optional<double> scale) {
  const char* op = "scaled_dot_product_attention";
  check_floating(op, q, "q");
  check_like(op, q, k, "k");
  check_like(op, q, v, "v");
  check_dim(op, q, "q", 4);
  check_dim(op, k, "k", 4);
  check_dim(op, v, "v", 4);
  const std::int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2);
  if (k.size(0) != B || v.size(0) != B || k.size(1) != H || v.size(1) != H || k.size(3) != D || v.size(3) != D ||
      v.size(2) != Sk) {
    op_error(op, "q, k, v must be (B, H, S, D) with matching B, H, D and k, v sharing S", {&q, &k, &v});
  }
  if (D > 256) op_error(op, "head dimension above 256 is not supported", {&q});
  if (causal && Sq != Sk) op_error(op, "causal attention needs equal query and key lengths", {&q, &k});
  Tensor mask;
  if (key_padding_mask.defined()) {
    if (key_padding_mask.device() != q.device()) op_error(op, "key_padding_mask is on another device", {&q, &key_padding_mask});
    if (key_padding_mask.dtype() != DType::boolean && key_padding_mask.dtype() != DType::uint8) {
      op_error(op, "key_padding_mask must be bool or uint8 (true = padded key)", {&key_padding_mask});
    }
    if (key_padding_mask.dim() != 2 || key_padding_mask.size(0) != B || key_padding_mask.size(1) != Sk) {
      op_error(op, "key_padding_mask must be (B, Sk)", {&q, &k, &key_padding_mask});
    }
    mask = key_padding_mask.contiguous();
  }
  const Device dev = q.device();
  const DType dt = q.dtype();
  if (cpu_widens(q)) return scaled_dot_product_attention(widened(q), widened(k), widened(v), mask, causal, scale).to(dt);
  auto last_dense = [](const Tensor& t) { return t.strides()[3] == 1 ? t : t.contiguous(); };
  const Tensor qc = last_dense(q), kc = last_dense(k), vc = last_dense(v);
  // (B, H, Sq, D) viewed over (B, Sq, H, D) memory: merging the heads afterwards
  // (permute(0, 2, 1, 3).view(B, Sq, H * D), as attention modules do) needs no copy.
  Tensor out = empty({B, Sq, H, D}, dt, dev).permute({0, 2, 1, 3});
  if (out.numel() == 0) return out;
  AttentionArgs a;
  a.batch = static_cast<int>(B);
  a.heads = static_cast<int>(H);
  a.sq = static_cast<int>(Sq);
  a.sk = static_cast<int>(Sk);
  a.d = static_cast<int>(D);
  for (int i = 0; i < 3; ++i) {
    a.q_stride[i] = qc.strides()[i];
    a.k_stride[i] = kc.strides()[i];
    a.v_stride[i] = vc.strides()[i];
    a.o_stride[i] = out.strides()[i];
  }
  a.q = qc.data_ptr();
  a.k = kc.data_ptr();
  a.v = vc.data_ptr();
  a.mask = mask.defined() ? static_cast<const unsigned char*>(mask.data_ptr()) : nullptr;
  a.out = out.data_ptr();
  a.causal = causal;
  a.scale = static_cast<float>(scale ? *scale : 1.0 / std::sqrt(static_cast<double>(D)));
  if (dev.kind == DeviceKind::cpu) cpu::prepare_gemm();  // Note [oneDNN at exit]
  launch(op, dev, [a] { cpu::attention(a); }, [&](void* stream) { cuda::attention(a, dt, stream); });
  return out;
}

}  // namespace streampool
