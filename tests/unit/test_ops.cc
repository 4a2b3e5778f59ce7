// Ops against double-precision host references, on the CPU and on CUDA, and their errors.

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <thread>
#include <limits>
#include <map>

#include "ops/folded_conv1d.h"
#include "streampool/nn/layers.h"

#include "streampool/ops.h"
#include "support/work.h"

using namespace streampool;

namespace {

class OpsTest : public test::DeviceTest {
 protected:
  static void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double tol, const char* what) {
    ASSERT_EQ(got.size(), ref.size()) << what;
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_FALSE(std::isnan(got[i])) << what << " at " << i;
      worst = std::max(worst, std::abs(got[i] - ref[i]) / (1 + std::abs(ref[i])));
    }
    EXPECT_LE(worst, tol) << what;
  }
};

double act_ref(double x, Activation a) {
  switch (a) {
    case Activation::none: return x;
    case Activation::relu: return x > 0 ? x : 0;
    case Activation::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::gelu_tanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::silu: return x / (1 + std::exp(-x));
    case Activation::tanh: return std::tanh(x);
  }
  return x;
}

// One row's softmax and layer norm (eps 1e-5) in double.
void softmax_layer_norm_row_ref(const float* x, const float* w, const float* b, std::int64_t n, double* sm, double* ln) {
  double mx = -1e300, s = 0, mean = 0, var = 0;
  for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
  for (std::int64_t i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  for (std::int64_t i = 0; i < n; ++i) sm[i] = std::exp(x[i] - mx) / s;
  for (std::int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  for (std::int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  for (std::int64_t i = 0; i < n; ++i) ln[i] = (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
}

}  // namespace

TEST_P(OpsTest, LinearWithEveryEpilogue) {
  const int m = 7, k = 33, n = 20;
  Tensor x = randn({m, k}, DType::float32, device, 1), w = randn({n, k}, DType::float32, device, 2),
         b = randn({n}, DType::float32, device, 3);
  auto xv = x.to_vector<float>(), wv = w.to_vector<float>(), bv = b.to_vector<float>();
  for (Activation a : {Activation::none, Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::silu,
                       Activation::tanh}) {
    for (bool with_bias : {true, false}) {
      std::vector<double> ref(m * n);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double acc = with_bias ? bv[j] : 0;
          for (int t = 0; t < k; ++t) acc += static_cast<double>(xv[i * k + t]) * wv[j * k + t];
          ref[i * n + j] = act_ref(acc, a);
        }
      // cuBLASLt's GELU epilogue evaluates tanh slightly differently: allow for it.
      expect_close(linear(x, w, with_bias ? b : Tensor(), a).to_vector<float>(), ref, 2e-5, "linear");
    }
  }
  // Leading batch dimensions and a strided input.
  Tensor x3 = randn({2, 3, k}, DType::float32, device, 4);
  Tensor y3 = linear(x3.transpose(0, 1), w, b);
  EXPECT_EQ(y3.shape(), (Shape{3, 2, n}));
}

TEST_P(OpsTest, MatmulBatchedAndShared) {
  Tensor a = randn({3, 4, 5}, DType::float32, device, 5), b = randn({3, 5, 6}, DType::float32, device, 6),
         s = randn({5, 6}, DType::float32, device, 7);
  auto av = a.to_vector<float>(), bv = b.to_vector<float>(), sv = s.to_vector<float>();
  std::vector<double> ref(3 * 4 * 6), ref_s(3 * 4 * 6);
  for (int z = 0; z < 3; ++z)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 6; ++j) {
        double acc = 0, acc_s = 0;
        for (int t = 0; t < 5; ++t) {
          acc += static_cast<double>(av[z * 20 + i * 5 + t]) * bv[z * 30 + t * 6 + j];
          acc_s += static_cast<double>(av[z * 20 + i * 5 + t]) * sv[t * 6 + j];
        }
        ref[z * 24 + i * 6 + j] = acc;
        ref_s[z * 24 + i * 6 + j] = acc_s;
      }
  expect_close(matmul(a, b).to_vector<float>(), ref, 1e-5, "bmm");
  expect_close(matmul(a, s).to_vector<float>(), ref_s, 1e-5, "shared b");
  EXPECT_THROW(matmul(a, randn({3, 4, 6}, DType::float32, device, 8)), InvalidArgument);
}

TEST_P(OpsTest, ElementwiseBroadcasting) {
  Tensor a = randn({2, 3, 4}, DType::float32, device, 9), row = randn({4}, DType::float32, device, 10),
         col = randn({3, 1}, DType::float32, device, 11);
  auto av = a.to_vector<float>(), rv = row.to_vector<float>(), cv = col.to_vector<float>();
  std::vector<double> sum(24), prod(24);
  for (int i = 0; i < 24; ++i) {
    sum[i] = av[i] + rv[i % 4];
    prod[i] = static_cast<double>(av[i]) * cv[(i / 4) % 3];
  }
  expect_close(add(a, row).to_vector<float>(), sum, 1e-6, "add row");
  expect_close(mul(a, col).to_vector<float>(), prod, 1e-6, "mul col");
  expect_close(add(a.transpose(0, 2).contiguous().transpose(0, 2), row).to_vector<float>(), sum, 1e-6, "strided");
  EXPECT_THROW(add(a, randn({5}, DType::float32, device, 1)), InvalidArgument);
  EXPECT_THROW(add(a, a.to(DType::float16)), InvalidArgument);
}

TEST_P(OpsTest, SoftmaxAndLayerNormOnLongRows) {
  for (std::int64_t n : {5, 512, 3000}) {
    Tensor x = randn({3, n}, DType::float32, device, 12, 0.0, 3.0);
    auto xv = x.to_vector<float>();
    Tensor w = randn({n}, DType::float32, device, 13), b = randn({n}, DType::float32, device, 14);
    auto wv = w.to_vector<float>(), bv = b.to_vector<float>();
    std::vector<double> sm(3 * n), ln(3 * n);
    for (int r = 0; r < 3; ++r) {
      softmax_layer_norm_row_ref(&xv[r * n], &wv[0], &bv[0], n, &sm[r * n], &ln[r * n]);
    }
    expect_close(softmax(x).to_vector<float>(), sm, 1e-6, "softmax");
    expect_close(layer_norm(x, w, b, 1e-5).to_vector<float>(), ln, 1e-5, "layer_norm");
  }
}

TEST_P(OpsTest, AttentionMatchesTheCpuWithMasksAndStrides) {
  const Device cpu(DeviceKind::cpu);
  Tensor q = randn({2, 3, 37, 64}, DType::float32, device, 15), k = randn({2, 3, 37, 64}, DType::float32, device, 16),
         v = randn({2, 3, 37, 64}, DType::float32, device, 17);
  std::vector<std::uint8_t> m(2 * 37, 0);
  for (int j = 30; j < 37; ++j) m[37 + j] = 1;  // second sequence: last 7 keys padded
  Tensor mask = from_vector(m, {2, 37}, device);
  // Reference: softmax(q k^T * scale) v on the host in double.
  auto qv = q.to_vector<float>(), kv = k.to_vector<float>(), vv = v.to_vector<float>();
  for (bool causal : {false, true}) {
    std::vector<double> ref(qv.size());
    for (int bh = 0; bh < 6; ++bh)
      for (int i = 0; i < 37; ++i) {
        std::vector<double> s(37);
        double mx = -1e300;
        for (int j = 0; j < 37; ++j) {
          bool masked = (causal && j > i) || m[(bh / 3) * 37 + j];
          double acc = 0;
          for (int d = 0; d < 64; ++d) acc += static_cast<double>(qv[(bh * 37 + i) * 64 + d]) * kv[(bh * 37 + j) * 64 + d];
          s[j] = masked ? -1e300 : acc / 8.0;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < 37; ++j) sum += s[j] <= -1e299 ? 0 : std::exp(s[j] - mx);
        for (int d = 0; d < 64; ++d) {
          double o = 0;
          for (int j = 0; j < 37; ++j) o += (s[j] <= -1e299 ? 0 : std::exp(s[j] - mx) / sum) * vv[(bh * 37 + j) * 64 + d];
          ref[(bh * 37 + i) * 64 + d] = o;
        }
      }
    expect_close(scaled_dot_product_attention(q, k, v, mask, causal).to_vector<float>(), ref, 2e-6, "sdpa");
    // Strided q (a permuted view of a (B, S, H, D) tensor) gives the same answer.
    Tensor q_bshd = q.permute({0, 2, 1, 3}).contiguous();
    expect_close(scaled_dot_product_attention(q_bshd.permute({0, 2, 1, 3}), k, v, mask, causal).to_vector<float>(), ref,
                 2e-6, "sdpa strided");
  }
  EXPECT_THROW(scaled_dot_product_attention(q, k, v, full({2, 36}, 0, DType::uint8, device)), InvalidArgument);
  EXPECT_THROW(scaled_dot_product_attention(q, k.slice(3, 0, 32), v), InvalidArgument);
}

TEST_P(OpsTest, EmbeddingAndItsOutOfRangeError) {
  Tensor w = randn({10, 6}, DType::float32, device, 18);
  Tensor ids = from_vector(std::vector<std::int64_t>{3, 0, 9, 3}, {2, 2}, device);
  Tensor e = embedding(ids, w);
  EXPECT_EQ(e.shape(), (Shape{2, 2, 6}));
  auto wv = w.to_vector<float>(), ev = e.to_vector<float>();
  for (int d = 0; d < 6; ++d) {
    EXPECT_EQ(ev[d], wv[3 * 6 + d]);
    EXPECT_EQ(ev[12 + d], wv[9 * 6 + d]);
  }
  Tensor bad = from_vector(std::vector<std::int64_t>{1, 10}, {2}, device);
  Tensor out = embedding(bad, w);
  EXPECT_THROW(current_stream(device).synchronize(), AsyncError) << "an id outside the table is reported";
  EXPECT_NO_THROW(current_stream(device).synchronize());
}

TEST_P(OpsTest, Conv1dWithStrideAndPadding) {
  Tensor x = randn({2, 3, 11}, DType::float32, device, 19), w = randn({4, 3, 3}, DType::float32, device, 20),
         b = randn({4}, DType::float32, device, 21);
  auto xv = x.to_vector<float>(), wv = w.to_vector<float>(), bv = b.to_vector<float>();
  const int lout = (11 + 2 - 3) / 2 + 1;
  std::vector<double> ref(2 * 4 * lout);
  for (int n = 0; n < 2; ++n)
    for (int o = 0; o < 4; ++o)
      for (int l = 0; l < lout; ++l) {
        double acc = bv[o];
        for (int c = 0; c < 3; ++c)
          for (int t = 0; t < 3; ++t) {
            int p = l * 2 - 1 + t;
            if (p >= 0 && p < 11) acc += static_cast<double>(wv[(o * 3 + c) * 3 + t]) * xv[(n * 3 + c) * 11 + p];
          }
        ref[(n * 4 + o) * lout + l] = acc;
      }
  expect_close(conv1d(x, w, b, 2, 1).to_vector<float>(), ref, 1e-5, "conv1d");
  // With an activation after it, applied after the bias: fused into the GEMM's pass on the CPU,
  // in one pass after the GEMM on CUDA (GemmArgs::row_bias).
  for (Activation act : {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::tanh}) {
    std::vector<double> want = ref;
    for (double& v : want) {
      v = act == Activation::relu   ? std::max(v, 0.0)
          : act == Activation::tanh ? std::tanh(v)
          : act == Activation::gelu ? 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))
                                    : 0.5 * v * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    }
    expect_close(conv1d(x, w, b, 2, 1, act).to_vector<float>(), want, 1e-5, "conv1d + activation");
  }
  expect_close(conv1d(x, w, Tensor(), 2, 1, Activation::relu).to_vector<float>(), [&] {
    std::vector<double> v = ref;
    for (int n = 0; n < 2; ++n)
      for (int o = 0; o < 4; ++o)
        for (int l = 0; l < lout; ++l) v[(n * 4 + o) * lout + l] = std::max(v[(n * 4 + o) * lout + l] - bv[o], 0.0);
    return v;
  }(), 1e-5, "conv1d without bias + relu");
  EXPECT_THROW(conv1d(x, randn({4, 2, 3}, DType::float32, device, 1)), InvalidArgument);
}

// Note [Folded convolution bias]: the bias folded into the weight as one more input column gives
// the unfolded convolution's result, with stride and padding, batches (each sample's ones row in
// its own place), every activation, and channel counts whose rows need zero padding to 8; on
// CUDA the Conv1d module runs folded, and equals the op.
TEST_P(OpsTest, FoldedConvolutionBiasEqualsTheUnfolded) {
  struct Case {
    int b, cin, len, cout, k, stride, padding;
  };
  for (const Case c : {Case{2, 3, 11, 4, 3, 2, 1}, Case{3, 5, 16, 6, 5, 1, 2}, Case{1, 8, 9, 8, 1, 1, 0}}) {
    Tensor x = randn({c.b, c.cin, c.len}, DType::float32, device, 31), w = randn({c.cout, c.cin, c.k}, DType::float32, device, 32),
           bias = randn({c.cout}, DType::float32, device, 33);
    Tensor folded = detail::fold_conv1d_bias(w, bias);
    ASSERT_EQ(folded.size(0), c.cout);
    EXPECT_EQ(folded.size(1) % 8, 0);
    EXPECT_GT(folded.size(1), c.cin * c.k);
    const std::vector<float> fv = folded.to_vector<float>(), bv = bias.to_vector<float>();
    for (int o = 0; o < c.cout; ++o) EXPECT_EQ(fv[o * folded.size(1) + c.cin * c.k], bv[o]) << "the bias column";
    for (Activation act : {Activation::none, Activation::relu, Activation::gelu, Activation::gelu_tanh}) {
      const std::vector<float> want = conv1d(x, w, bias, c.stride, c.padding, act).to_vector<float>();
      const std::vector<float> got =
          detail::conv1d_folded(x, folded, c.cin, c.k, c.stride, c.padding, act).to_vector<float>();
      ASSERT_EQ(got.size(), want.size());
      for (std::size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << i;
    }
  }
  EXPECT_THROW(detail::conv1d_folded(randn({1, 4, 9}, DType::float32, device, 1),
                                     detail::fold_conv1d_bias(randn({2, 3, 3}, DType::float32, device, 2),
                                                              randn({2}, DType::float32, device, 3)),
                                     3, 3, 1, 1, Activation::none),
               InvalidArgument);
  // The module: folded on CUDA, as loaded; its result equals the op's.
  auto conv = nn::make_module("sequential", R"({"layers": [{"kind": "conv1d", "in_channels": 6, "out_channels": 10,
      "kernel_size": 5, "padding": 2}, {"kind": "relu"}]})");
  nn::StateDict sd;
  sd["0.weight"] = randn({10, 6, 5}, DType::float32, Device(DeviceKind::cpu), 40);
  sd["0.bias"] = randn({10}, DType::float32, Device(DeviceKind::cpu), 41);
  conv->load_state_dict(sd, device);
  Tensor x = randn({2, 6, 20}, DType::float32, device, 42);
  const std::vector<float> want =
      conv1d(x, sd["0.weight"].to(device), sd["0.bias"].to(device), 1, 2, Activation::relu).to_vector<float>();
  const std::vector<float> got = conv->forward(nn::Input(x)).y.to_vector<float>();
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << i;
}

// The bench's per-request check: the largest difference wherever it sits (the vector part or
// the tail of the CUDA kernel, aligned or a view one element in), kept across calls, and NaN as
// infinity.
TEST_P(OpsTest, AccumulateMaxAbsDiffFindsTheLargestDifferenceAndNaN) {
  for (DType dt : {DType::float32, DType::float16}) {
    for (std::int64_t n : {1, 7, 1000, 131075}) {
      for (std::int64_t offset : {0, 1}) {
        for (std::int64_t at : {std::int64_t(0), n / 2, n - 1}) {
          std::vector<float> av(n + offset), bv(n + offset);
          for (std::int64_t i = 0; i < n + offset; ++i) av[i] = bv[i] = static_cast<float>((i * 37) % 101) / 64.0f;
          bv[offset + at] += 0.75f;  // exact in float16 too
          if (at != n - 1) bv[offset + n - 1] += 0.25f;
          Tensor a = from_vector(av, {n + offset}, device).to(dt).slice(0, offset, n + offset);
          Tensor b = from_vector(bv, {n + offset}, device).to(dt).slice(0, offset, n + offset);
          Tensor acc = zeros({1}, DType::float32, device);
          accumulate_max_abs_diff(acc, a, b);
          const float got = acc.to_vector<float>()[0];
          EXPECT_NEAR(got, 0.75f, 2e-3) << dtype_name(dt) << " n " << n << " offset " << offset << " at " << at;
          accumulate_max_abs_diff(acc, a, a);
          EXPECT_EQ(acc.to_vector<float>()[0], got) << "a later smaller difference keeps the maximum";
        }
      }
    }
    std::vector<float> nan_at_end(4100, 1.0f);
    nan_at_end.back() = std::numeric_limits<float>::quiet_NaN();
    Tensor acc = zeros({1}, DType::float32, device);
    accumulate_max_abs_diff(acc, from_vector(nan_at_end, {4100}, device).to(dt), full({4100}, 1.0, dt, device));
    EXPECT_TRUE(std::isinf(acc.to_vector<float>()[0])) << "NaN counts as an infinite difference";
  }
}

TEST_P(OpsTest, HalfPrecisionAccumulatesInFloat) {
  // 4096 products of ones: a float16 accumulator would stall at 2048.
  Tensor a = full({1, 4096}, 1.0, DType::float16, device), w = full({1, 4096}, 1.0, DType::float16, device);
  EXPECT_EQ(linear(a, w).to_float_vector()[0], 4096.0f);
  Tensor bf = full({1, 4096}, 1.0, DType::bfloat16, device);
  EXPECT_EQ(linear(bf, bf).to_float_vector()[0], 4096.0f);
}

TEST_P(OpsTest, ErrorsNameTheOpShapesDtypeAndDevice) {
  Tensor x = zeros({2, 8}, DType::float32, device), w = zeros({4, 9}, DType::float32, device);
  try {
    linear(x, w);
    FAIL();
  } catch (const InvalidArgument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("linear"), std::string::npos) << m;
    EXPECT_NE(m.find("(2, 8)"), std::string::npos) << m;
    EXPECT_NE(m.find("(4, 9)"), std::string::npos) << m;
    EXPECT_NE(m.find("float32"), std::string::npos) << m;
    EXPECT_NE(m.find(device.str()), std::string::npos) << m;
  }
  EXPECT_THROW(linear(zeros({2, 8}, DType::int64, device), w), InvalidArgument);
  EXPECT_THROW(linear(Tensor(), w), InvalidArgument);
  EXPECT_THROW(layer_norm(x, zeros({7}, DType::float32, device), zeros({8}, DType::float32, device), 1e-5),
               InvalidArgument);
  if (!test::skip_unless_available("cuda")) {
    Device other = device.kind == DeviceKind::cpu ? Device(DeviceKind::cuda) : Device(DeviceKind::cpu);
    EXPECT_THROW(linear(x, zeros({4, 8}, DType::float32, other)), InvalidArgument);
  }
}

// No input features: the output is act(bias) broadcast (it was zeros), in every dtype and with
// every fused activation; nn::Linear(0, 3) too.
TEST_P(OpsTest, LinearWithNoInputFeaturesIsTheBias) {
  const std::vector<float> bv = {0.5f, -1.25f, 2.0f, -0.75f};
  for (DType dt : {DType::float32, DType::float16, DType::bfloat16}) {
    Tensor x = empty({2, 0}, dt, device), w = empty({4, 0}, dt, device);
    Tensor b = from_vector(bv, {4}, device).to(dt);
    for (Activation a : {Activation::none, Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::silu,
                         Activation::tanh}) {
      Tensor y = linear(x, w, b, a);
      ASSERT_EQ(y.shape(), (Shape{2, 4}));
      ASSERT_EQ(y.dtype(), dt);
      std::vector<float> got = y.to_float_vector();
      for (int i = 0; i < 8; ++i) {
        const double ref = act_ref(bv[i % 4], a);
        EXPECT_NEAR(got[i], ref, 1e-2 * (1 + std::abs(ref))) << dtype_name(dt) << " activation " << static_cast<int>(a) << " at " << i;
      }
      std::vector<float> no_bias = linear(x, w, Tensor(), a).to_float_vector();
      for (float v : no_bias) EXPECT_EQ(v, 0.0f) << dtype_name(dt);
    }
  }
  nn::Linear layer(0, 3);
  std::map<std::string, Tensor> state = {{"weight", empty({3, 0}, DType::float32, device)},
                                         {"bias", from_vector(std::vector<float>{1, 2, 3}, {3}, device)}};
  layer.load_state_dict(state, device);
  EXPECT_EQ(layer(empty({5, 0}, DType::float32, device)).y.to_vector<float>(),
            (std::vector<float>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3}));
}

// A NaN in q, or a NaN scale, makes the affected rows NaN as in PyTorch (they were zeros); NaN
// in k or v propagates too; rows without NaN are untouched. Every dtype.
TEST_P(OpsTest, AttentionPropagatesNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int S = 40, D = 32;  // two key tiles on CUDA
  for (DType dt : {DType::float32, DType::float16, DType::bfloat16}) {
    Tensor q = randn({1, 2, S, D}, DType::float32, device, 31), k = randn({1, 2, S, D}, DType::float32, device, 32),
           v = randn({1, 2, S, D}, DType::float32, device, 33);
    std::vector<float> qv = q.to_vector<float>();
    qv[(0 * S + 5) * D + 3] = nan;  // head 0, query 5
    Tensor qn = from_vector(qv, {1, 2, S, D}, device);
    auto out = scaled_dot_product_attention(qn.to(dt), k.to(dt), v.to(dt)).to_float_vector();
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < S; ++i)
        for (int d = 0; d < D; ++d) {
          const float o = out[(h * S + i) * D + d];
          if (h == 0 && i == 5) ASSERT_TRUE(std::isnan(o)) << dtype_name(dt) << " NaN in q: row " << i << " dim " << d << " = " << o;
          else ASSERT_FALSE(std::isnan(o)) << dtype_name(dt) << " NaN leaked into head " << h << " row " << i;
        }
    // Also with a causal mask and a padding mask: the NaN row is NaN whatever is masked.
    auto causal = scaled_dot_product_attention(qn.to(dt), k.to(dt), v.to(dt), Tensor(), true).to_float_vector();
    for (int d = 0; d < D; ++d) ASSERT_TRUE(std::isnan(causal[5 * D + d])) << dtype_name(dt) << " causal";
    for (float o : scaled_dot_product_attention(q.to(dt), k.to(dt), v.to(dt), Tensor(), false, std::nan("")).to_float_vector()) {
      ASSERT_TRUE(std::isnan(o)) << dtype_name(dt) << " NaN scale";
    }
    std::vector<float> kv = k.to_vector<float>();
    kv[(1 * S + 7) * D] = nan;  // head 1, key 7: every query of head 1 sees it
    auto kout = scaled_dot_product_attention(q.to(dt), from_vector(kv, {1, 2, S, D}, device).to(dt), v.to(dt)).to_float_vector();
    for (int i = 0; i < S; ++i) {
      ASSERT_TRUE(std::isnan(kout[(1 * S + i) * D])) << dtype_name(dt) << " NaN in k, query " << i;
      ASSERT_FALSE(std::isnan(kout[(0 * S + i) * D])) << dtype_name(dt) << " NaN in k leaked into head 0";
    }
  }
}

// conv1d takes a strided bias (a slice), as linear and layer_norm do; it used to fail with a
// message about a view that named neither conv1d nor the bias.
TEST_P(OpsTest, Conv1dAcceptsAStridedBias) {
  Tensor x = randn({2, 3, 10}, DType::float32, device, 41), w = randn({4, 3, 3}, DType::float32, device, 42);
  Tensor wide = randn({4, 2}, DType::float32, device, 43);
  Tensor strided = wide.select(1, 0);  // stride 2
  ASSERT_NE(strided.strides()[0], 1);
  std::vector<float> with_strided = conv1d(x, w, strided, 1, 1).to_vector<float>();
  std::vector<float> with_dense = conv1d(x, w, strided.contiguous(), 1, 1).to_vector<float>();
  EXPECT_EQ(with_strided, with_dense);
}

// A kernel-launch failure names the op, the shapes, the dtype and the device. The trigger is a
// real limit: attention launches one block row per (batch, head), and CUDA's grid.y stops at
// 65535. (When that limit is lifted, this test needs another trigger.)
TEST(CudaErrors, KernelLaunchFailureNamesOpShapesDtypeAndDevice_cuda) {
  if (test::skip_unless_available("cuda")) GTEST_SKIP() << "no CUDA device visible";
  const Device gpu(DeviceKind::cuda, 0);
  Tensor q = zeros({70000, 1, 1, 32}, DType::float32, gpu);
  try {
    Tensor o = scaled_dot_product_attention(q, q, q);
    synchronize(gpu);
    ADD_FAILURE() << "70000 (batch x heads) launched: update this test's trigger";
  } catch (const CudaError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("scaled_dot_product_attention"), std::string::npos) << what;
    EXPECT_NE(what.find("(70000, 1, 1, 32)"), std::string::npos) << what;
    EXPECT_NE(what.find("float32"), std::string::npos) << what;
    EXPECT_NE(what.find("cuda:0"), std::string::npos) << what;
  }
}

// GEMM operands at an address that is only 2-byte aligned (a slice one half-precision element
// in) give the same result as aligned ones.
TEST_P(OpsTest, LinearOnMisalignedHalfPrecisionViews) {
  for (DType dt : {DType::float16, DType::bfloat16, DType::float32}) {
    Tensor big = randn({1, 8 * 64 + 1}, DType::float32, device, 51).to(dt);
    Tensor x = big.slice(1, 1, 8 * 64 + 1).view({8, 64});  // data pointer one element past 16 bytes
    Tensor w = randn({32, 64}, DType::float32, device, 52).to(dt);
    Tensor b = randn({33}, DType::float32, device, 53).to(dt).slice(0, 1, 33);  // a misaligned bias too
    std::vector<float> ref = linear(x.clone(), w, b.clone(), Activation::relu).to_float_vector();
    std::vector<float> got;
    try {
      got = linear(x, w, b, Activation::relu).to_float_vector();
    } catch (const Error& e) {
      FAIL() << dtype_name(dt) << ": " << e.what();
    }
    // Another alignment may pick another algorithm (another summation order): close, not equal.
    ASSERT_EQ(got.size(), ref.size());
    const double tol = dt == DType::float32 ? 1e-5 : dt == DType::float16 ? 2e-3 : 1.6e-2;
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], ref[i], tol * (1 + std::abs(ref[i]))) << dtype_name(dt) << " at " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, OpsTest, STREAMPOOL_DEVICES, test::param_name);

// Shapes large enough that STREAMPOOL_CPU_THREADS > 1 splits them (CTest runs this suite again
// with 2 and with 3 intra-op threads, and with STREAMPOOL_CPU_GEMM=openblas): GEMM column
// blocks with a tail, row blocks, whole matrices of a batch, a one-row GEMM, rows of softmax and
// layer norm, elements of GELU, (batch, head) pairs of attention. Each against a double
// reference, and each bitwise equal when computed again while three other threads load the
// cores, so that a split never depends on how many threads were free.
TEST_P(OpsTest, LargeOpsAcrossIntraOpBlocksMatchAndDoNotDependOnLoad) {
  struct Gemm {
    int batch, m, k, n;
  };
  std::vector<std::function<Tensor()>> ops;
  std::uint64_t seed = 900;
  for (Gemm g : {Gemm{1, 64, 512, 300}, Gemm{1, 1000, 256, 20}, Gemm{3, 128, 256, 128}, Gemm{1, 1, 4096, 2048}}) {
    Tensor a = randn({g.batch, g.m, g.k}, DType::float32, device, seed++);
    Tensor w = randn({g.n, g.k}, DType::float32, device, seed++), bias = randn({g.n}, DType::float32, device, seed++);
    Tensor b3 = randn({g.batch, g.k, g.n}, DType::float32, device, seed++);
    auto av = a.to_vector<float>(), wv = w.to_vector<float>(), bv = bias.to_vector<float>(), b3v = b3.to_vector<float>();
    std::vector<double> ref_lin(std::size_t(g.batch) * g.m * g.n), ref_mm(ref_lin.size());
    for (int z = 0; z < g.batch; ++z)
      for (int i = 0; i < g.m; ++i)
        for (int j = 0; j < g.n; ++j) {
          double lin = bv[j], mm = 0;
          for (int t = 0; t < g.k; ++t) {
            const double x = av[(std::size_t(z) * g.m + i) * g.k + t];
            lin += x * wv[std::size_t(j) * g.k + t];
            mm += x * b3v[(std::size_t(z) * g.k + t) * g.n + j];
          }
          ref_lin[(std::size_t(z) * g.m + i) * g.n + j] = act_ref(lin, Activation::gelu);
          ref_mm[(std::size_t(z) * g.m + i) * g.n + j] = mm;
        }
    const std::string what = std::to_string(g.batch) + "x" + std::to_string(g.m) + "x" + std::to_string(g.k) + "x" + std::to_string(g.n);
    // float32 sums of k products: the rounding error grows as sqrt(k) (7e-5 at k = 4096, with
    // OpenBLAS and oneDNN alike).
    const double tol = 2e-5 * std::max(1.0, std::sqrt(g.k / 256.0));
    expect_close(linear(a, w, bias, Activation::gelu).to_vector<float>(), ref_lin, tol, ("linear " + what).c_str());
    expect_close(matmul(a, b3).to_vector<float>(), ref_mm, tol, ("matmul " + what).c_str());
    ops.push_back([a, w, bias] { return linear(a, w, bias, Activation::gelu); });
    ops.push_back([a, b3] { return matmul(a, b3); });
  }
  {
    const std::int64_t rows = 300, n = 257;
    Tensor x = randn({rows, n}, DType::float32, device, seed++, 0.0, 3.0);
    Tensor w = randn({n}, DType::float32, device, seed++), b = randn({n}, DType::float32, device, seed++);
    auto xv = x.to_vector<float>(), wv = w.to_vector<float>(), bv = b.to_vector<float>();
    std::vector<double> sm(rows * n), ln(rows * n), ge(rows * n);
    for (int r = 0; r < rows; ++r) {
      softmax_layer_norm_row_ref(&xv[r * n], &wv[0], &bv[0], n, &sm[r * n], &ln[r * n]);
      for (int i = 0; i < n; ++i) ge[r * n + i] = act_ref(xv[r * n + i], Activation::gelu);
    }
    expect_close(softmax(x).to_vector<float>(), sm, 1e-6, "softmax 300x257");
    expect_close(layer_norm(x, w, b, 1e-5).to_vector<float>(), ln, 1e-5, "layer_norm 300x257");
    expect_close(gelu(x).to_vector<float>(), ge, 1e-6, "gelu 300x257");
    ops.push_back([x] { return softmax(x); });
    ops.push_back([x, w, b] { return layer_norm(x, w, b, 1e-5); });
    ops.push_back([x] { return gelu(x); });
  }
  {
    const int B = 2, H = 4, S = 64, D = 32;
    Tensor q = randn({B, H, S, D}, DType::float32, device, seed++), k = randn({B, H, S, D}, DType::float32, device, seed++),
           v = randn({B, H, S, D}, DType::float32, device, seed++);
    auto qv = q.to_vector<float>(), kv = k.to_vector<float>(), vv = v.to_vector<float>();
    std::vector<double> ref(std::size_t(B) * H * S * D);
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    for (int z = 0; z < B * H; ++z)
      for (int i = 0; i < S; ++i) {
        std::vector<double> p(S);
        double mx = -1e300, sum = 0;
        for (int j = 0; j < S; ++j) {
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += double(qv[(std::size_t(z) * S + i) * D + d]) * kv[(std::size_t(z) * S + j) * D + d];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        for (int j = 0; j < S; ++j) sum += (p[j] = std::exp(p[j] - mx));
        for (int d = 0; d < D; ++d) {
          double o = 0;
          for (int j = 0; j < S; ++j) o += p[j] / sum * vv[(std::size_t(z) * S + j) * D + d];
          ref[(std::size_t(z) * S + i) * D + d] = o;
        }
      }
    expect_close(scaled_dot_product_attention(q, k, v).to_vector<float>(), ref, 1e-5, "attention 2x4x64x32");
    ops.push_back([q, k, v] { return scaled_dot_product_attention(q, k, v); });
  }
  // The same ops again: alone, then while three threads run them too.
  std::vector<std::vector<float>> alone;
  for (auto& op : ops) alone.push_back(op().to_vector<float>());
  std::atomic<bool> stop{false};
  std::vector<std::thread> load;
  for (int t = 0; t < 3; ++t)
    load.emplace_back([&] {
      while (!stop) {
        for (auto& op : ops) (void)op().to_vector<float>();
      }
    });
  for (int round = 0; round < 3; ++round)
    for (std::size_t i = 0; i < ops.size(); ++i) EXPECT_EQ(ops[i]().to_vector<float>(), alone[i]) << "op " << i << " round " << round;
  stop = true;
  for (auto& th : load) th.join();
}
