// Google Benchmark: where a TransformerEncoderLayer's time goes at large batch (the encoder
// workload of bench/WORKLOADS.md: d_model 512, 8 heads, feed-forward 2048, sequence 128, post-norm),
// op by op through the public ops, float16, and BERT-MiniLM's attention shape. Time from device
// events around 5 repetitions (manual time); GEMMs also report TFLOP/s.
// Device: STREAMPOOL_BENCH_DEVICE (default cuda:0 where usable, else cpu).

#include <benchmark/benchmark.h>

#include <cstdlib>

#include "bench_device.h"
#include "streampool/streampool.h"

using namespace streampool;

namespace {

const Device kDev = bench_device();
const DType kDt = kDev.kind == DeviceKind::cpu ? DType::float32 : DType::float16;
constexpr std::int64_t S = 128, E = 512, H = 8, F = 2048;

template <typename Fn>
void timed(benchmark::State& state, double flops, Fn&& body) {
  body();
  Stream s = current_stream(kDev);
  s.synchronize();
  double sec = 0;
  for (auto _ : state) {
    Event a(true), b(true);
    a.record(s);
    for (int i = 0; i < 5; ++i) body();
    b.record(s);
    b.synchronize();
    sec = a.elapsed_ms(b) / 1e3 / 5;
    state.SetIterationTime(sec);
  }
  state.counters["ms"] = sec * 1e3;
  if (flops > 0) state.counters["TFLOP/s"] = flops / sec / 1e12;
}

Tensor w(const Shape& shape, std::uint64_t seed) { return randn(shape, kDt, kDev, seed, 0.0, 0.02); }

void BM_Linear(benchmark::State& state, std::int64_t in, std::int64_t out, Activation act) {
  const std::int64_t M = state.range(0) * S;
  Tensor x = w({M, in}, 1), wt = w({out, in}, 2), b = w({out}, 3);
  timed(state, 2.0 * M * in * out, [&] { (void)linear(x, wt, b, act); });
}
void BM_InProj(benchmark::State& s) { BM_Linear(s, E, 3 * E, Activation::none); }
void BM_OutProj(benchmark::State& s) { BM_Linear(s, E, E, Activation::none); }
void BM_Linear1Relu(benchmark::State& s) { BM_Linear(s, E, F, Activation::relu); }
void BM_Linear2(benchmark::State& s) { BM_Linear(s, F, E, Activation::none); }

void BM_Attention(benchmark::State& state, std::int64_t heads, std::int64_t d) {
  const std::int64_t B = state.range(0);
  // As MultiheadAttention calls it: q, k, v are permuted views of one (B, S, 3, heads, d) tensor.
  Tensor qkv = w({B, S, 3, heads, d}, 4);
  Tensor q = qkv.select(2, 0).permute({0, 2, 1, 3}), k = qkv.select(2, 1).permute({0, 2, 1, 3}),
         v = qkv.select(2, 2).permute({0, 2, 1, 3});
  timed(state, 4.0 * B * heads * S * S * d, [&] { (void)scaled_dot_product_attention(q, k, v); });
}
void BM_AttentionEncoder(benchmark::State& s) { BM_Attention(s, H, E / H); }
void BM_AttentionBert(benchmark::State& s) { BM_Attention(s, 12, 32); }

void BM_MergeHeads(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  Tensor a = w({B, H, S, E / H}, 5);
  timed(state, 0, [&] { (void)a.permute({0, 2, 1, 3}).contiguous(); });
}

void BM_AddLayerNorm(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  Tensor x = w({B, S, E}, 6), y = w({B, S, E}, 7), g = w({E}, 8), b = w({E}, 9);
  timed(state, 0, [&] { (void)layer_norm(add(x, y), g, b, 1e-5); });
}

void BM_EncoderLayer(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  std::shared_ptr<nn::Module> m = nn::make_module(
      "transformer_encoder_layer", R"({"d_model": 512, "nhead": 8, "dim_feedforward": 2048, "batch_first": true})");
  nn::StateDict sd;
  std::uint64_t seed = 20;
  for (const auto& [name, shape] : m->parameters()) sd[name] = randn(shape, DType::float32, Device(DeviceKind::cpu), seed++, 0.0, 0.02);
  m->load_state_dict(sd, kDev, kDt);
  Tensor x = w({B, S, E}, 10);
  const double gemm = 2.0 * B * S * (E * 3 * E + E * E + 2.0 * E * F);
  timed(state, gemm + 4.0 * B * H * S * S * (E / H), [&] { (void)m->forward(nn::Input(x)); });
}

}  // namespace

#define ENC_ARGS ->Arg(32)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond)
BENCHMARK(BM_InProj) ENC_ARGS;
BENCHMARK(BM_AttentionEncoder) ENC_ARGS;
BENCHMARK(BM_MergeHeads) ENC_ARGS;
BENCHMARK(BM_OutProj) ENC_ARGS;
BENCHMARK(BM_AddLayerNorm) ENC_ARGS;
BENCHMARK(BM_Linear1Relu) ENC_ARGS;
BENCHMARK(BM_Linear2) ENC_ARGS;
BENCHMARK(BM_EncoderLayer) ENC_ARGS;
BENCHMARK(BM_AttentionBert)->Arg(128)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
