// The graph path (compile): results equal to eager for every golden module, compile once per
// (signature, stream), the MPS suite's test 15 (graph compilation stress), eviction, modes.
// On the CPU a compiled module replays its forward in planned memory; on CUDA it replays a
// captured graph.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "golden_runner.h"
#include "streampool/streampool.h"
#include "support/work.h"

using namespace streampool;

namespace {

class GraphTest : public test::DeviceTest {};

std::shared_ptr<nn::Module> loaded(const char* kind, const char* config, const Device& d, DType dt = DType::float32) {
  std::shared_ptr<nn::Module> m = nn::make_module(kind, config);
  nn::StateDict sd;
  std::uint64_t seed = 100;
  for (const auto& [name, shape] : m->parameters()) {
    sd[name] = randn(shape, DType::float32, Device(DeviceKind::cpu), seed++).to(DType::float32);
  }
  m->load_state_dict(sd, d, dt);
  return m;
}

const char* kMlp = R"({"sizes": [32, 64, 16], "activation": "gelu"})";

std::vector<float> values(const Tensor& t) { return t.to_float_vector(); }

}  // namespace

// Every golden case that is a module: compiled results (the first call builds, the next two
// replay) equal the eager result bit for bit, in every dtype the device runs.
TEST_P(GraphTest, CompiledEqualsEagerOnEveryGoldenModule) {
  const std::string dir = test::source_dir() + "/tests/data/golden";
  const std::vector<DType> dtypes = device.kind == DeviceKind::cpu
                                        ? std::vector<DType>{DType::float32}
                                        : std::vector<DType>{DType::float32, DType::float16, DType::bfloat16};
  int modules = 0;
  for (const golden::Case& c : golden::load_manifest(dir)) {
    if (c.kind == "activations" || c.kind == "sdpa") continue;  // op cases, no module
    for (DType dt : dtypes) {
      SafetensorsFile f = SafetensorsFile::open(dir + "/" + c.file);
      std::shared_ptr<nn::Module> m = nn::make_module(c.kind, c.config.dump());
      nn::StateDict sd;
      for (const auto& p : c.params) sd[p] = f.load(p, Device(DeviceKind::cpu));
      m->load_state_dict(sd, device, dt);
      auto in_map = golden::load_inputs(c, f, device, dt);
      nn::Input in(in_map.count("input_ids") ? in_map.at("input_ids") : in_map.at("input"));
      if (in_map.count("key_padding_mask")) in.key_padding_mask = in_map.at("key_padding_mask");
      if (in_map.count("attention_mask")) in.attention_mask = in_map.at("attention_mask");
      if (in_map.count("token_type_ids")) in.token_type_ids = in_map.at("token_type_ids");
      const nn::Output eager = m->forward(in);
      auto compiled = compile(m);
      for (int call = 0; call < 3; ++call) {
        const nn::Output got = (*compiled)(in);
        EXPECT_EQ(values(got.y), values(eager.y)) << c.name << " " << dtype_name(dt) << " call " << call;
        EXPECT_EQ(got.pooled.defined(), eager.pooled.defined()) << c.name;
        if (eager.pooled.defined()) EXPECT_EQ(values(got.pooled), values(eager.pooled)) << c.name;
      }
      const GraphStats s = compiled->stats();
      EXPECT_EQ(s.calls, 3u);
      if (s.eager == 0) {
        EXPECT_EQ(s.instances, 1u) << c.name;
        EXPECT_EQ(s.replays, 2u) << c.name;
      }
      ++modules;
    }
  }
  EXPECT_GE(modules, 7);
}

// A replay's result belongs to its caller: the next call does not overwrite it.
TEST_P(GraphTest, ResultsAreTheCallersOwn) {
  auto compiled = compile(loaded("mlp", kMlp, device));
  Tensor a = randn({4, 32}, DType::float32, device, 1), b = randn({4, 32}, DType::float32, device, 2);
  (*compiled)(a);  // builds
  Tensor ya = (*compiled)(a).y;
  const std::vector<float> first = values(ya);
  Tensor yb = (*compiled)(b).y;
  EXPECT_EQ(values(ya), first) << "the second replay wrote into the first one's result";
  EXPECT_NE(values(yb), first);
  EXPECT_NE(ya.data_ptr(), yb.data_ptr());
  // A replay allocates its result and nothing else: every intermediate is in the planned memory.
  synchronize(device);
  const std::uint64_t before = memory_stats(device).allocations;
  Tensor yc = (*compiled)(b).y;
  EXPECT_EQ(memory_stats(device).allocations - before, 1u);
  const std::uint64_t eager_before = memory_stats(device).allocations;
  compiled->module().forward(b);
  EXPECT_GT(memory_stats(device).allocations - eager_before, 1u) << "the eager forward does allocate (the check can fail)";
}

// The launches of a forward, counted from the captured graph's nodes (the bench reports them
// per request): three activation layers are three kernels of ours and nothing else. The CPU has
// no graphs: -1.
TEST_P(GraphTest, CountsTheKernelsOfTheCapturedForward) {
  std::shared_ptr<nn::Module> acts =
      nn::make_module("sequential", R"({"layers": [{"kind": "tanh"}, {"kind": "relu"}, {"kind": "tanh"}]})");
  acts->load_state_dict({}, device, DType::float32);
  auto compiled = compile(acts);
  EXPECT_EQ(compiled->stats().kernels_per_call, -1) << "nothing captured yet";
  Tensor x = randn({4, 32}, DType::float32, device, 3);
  (*compiled)(x);
  const GraphStats s = compiled->stats();
  if (device.kind == DeviceKind::cuda) {
    EXPECT_EQ(s.kernels_per_call, 3);
    EXPECT_EQ(s.copies_per_call, 0);
  } else {
    EXPECT_EQ(s.kernels_per_call, -1);
    EXPECT_EQ(s.copies_per_call, -1);
  }
}

// Replays queued behind a slow kernel, forty of them on one instance before the first runs: each
// replay's copies are set while the earlier launches wait, and still each reads its own input and
// writes its own result (on CUDA an executable graph's updates apply to later launches only).
TEST_P(GraphTest, QueuedReplaysBeyondTheRingKeepTheirOwnInputsAndResults) {
  auto m = loaded("mlp", kMlp, device);
  auto compiled = compile(m);
  constexpr int kCalls = 40;
  std::vector<Tensor> inputs, expected;
  for (int i = 0; i < kCalls; ++i) {
    inputs.push_back(randn({2, 32}, DType::float32, device, 500 + i));
    expected.push_back(m->forward(inputs.back()).y);
  }
  (*compiled)(inputs[0]);  // builds
  synchronize(device);
  test::DeviceBuffer scratch(device, 1);
  for (int round = 0; round < 2; ++round) {
    // Stream order holds every replay behind 20 ms of GPU time: the host runs kCalls ahead.
    test::slow_fill(current_stream(device), scratch.data(), 1, 1.0f, 20000);
    std::vector<Tensor> got;
    for (int i = 0; i < kCalls; ++i) got.push_back((*compiled)(inputs[i]).y);
    for (int i = 0; i < kCalls; ++i) {
      EXPECT_EQ(values(got[i]), values(expected[i])) << "replay " << i << " of round " << round;
    }
  }
  EXPECT_EQ(compiled->stats().replays, 2u * kCalls);
}

// Two compiled modules of one architecture, one input shape, called in turn from one thread:
// each answers with its own weights (a thread's memo of instances names the module).
TEST_P(GraphTest, TwoCompiledModulesWithTheSameShapesKeepTheirOwnInstances) {
  auto m1 = loaded("mlp", kMlp, device);
  std::shared_ptr<nn::Module> m2 = nn::make_module("mlp", kMlp);
  nn::StateDict sd;
  std::uint64_t seed = 500;
  for (const auto& [name, shape] : m2->parameters()) sd[name] = randn(shape, DType::float32, Device(DeviceKind::cpu), seed++);
  m2->load_state_dict(sd, device);
  auto c1 = compile(m1), c2 = compile(m2);
  Tensor x = randn({2, 32}, DType::float32, device, 55);
  const std::vector<float> e1 = values(m1->forward(x).y), e2 = values(m2->forward(x).y);
  ASSERT_NE(e1, e2);
  int wrong = 0;
  for (int i = 0; i < 10; ++i) {
    wrong += values((*c1)(x).y) != e1;
    wrong += values((*c2)(x).y) != e2;
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(c1->stats().instances, 1u);
  EXPECT_EQ(c2->stats().instances, 1u) << "the second module built its own instance";
  EXPECT_EQ(c2->stats().replays, 9u);
  c1.reset();  // a module destroyed: another compiled later must not find its instances
  auto c3 = compile(m2);
  for (int i = 0; i < 3; ++i) wrong += values((*c3)(x).y) != e2;
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(c3->stats().instances, 1u);
}

// The MPS suite's test 15, part 1: 16 threads x 30 calls, a distinct batch size per thread;
// each thread checks every result against its own eager result.
TEST_P(GraphTest, SixteenThreadsWithDistinctShapesCompileOncePerStream) {
  auto m = loaded("mlp", kMlp, device);
  auto compiled = compile(m);
  constexpr int kThreads = 16, kCalls = 30;
  std::atomic<int> wrong{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        Tensor x = randn({t + 1, 32}, DType::float32, device, 1000 + t);
        const std::vector<float> expect = values(m->forward(x).y);
        for (int i = 0; i < kCalls; ++i) wrong += values((*compiled)(x).y) != expect;
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(errors, 0);
  const GraphStats s = compiled->stats();
  EXPECT_EQ(s.calls, static_cast<std::uint64_t>(kThreads * kCalls));
  EXPECT_EQ(s.signatures, static_cast<std::size_t>(kThreads));
  EXPECT_EQ(s.instances, static_cast<std::uint64_t>(kThreads)) << "one build per (shape, stream), never two";
  EXPECT_EQ(s.replays, static_cast<std::uint64_t>(kThreads * (kCalls - 1)));
  EXPECT_EQ(s.eager, 0u);
  if (device.kind == DeviceKind::cuda) EXPECT_EQ(s.captures, static_cast<std::uint64_t>(kThreads));
}

// Part 2: 16 threads x 50 calls on one shared shape, each thread with its own input and expected
// output; then 12 threads mixing three compiled modules.
TEST_P(GraphTest, SixteenThreadsShareAShapeAndTwelveMixModules) {
  auto mlp = loaded("mlp", kMlp, device);
  auto enc = loaded("transformer_encoder_layer",
                    R"({"d_model": 32, "nhead": 4, "dim_feedforward": 64, "batch_first": true})", device);
  auto conv = loaded("sequential", R"({"layers": [{"kind": "conv1d", "in_channels": 8, "out_channels": 16,
      "kernel_size": 3, "padding": 1}, {"kind": "relu"}, {"kind": "conv1d", "in_channels": 16, "out_channels": 8,
      "kernel_size": 1}]})", device);
  auto cm = compile(mlp);
  std::atomic<int> wrong{0};
  std::vector<std::uint32_t> stream_ids(16);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t) {
      threads.emplace_back([&, t] {
        stream_ids[t] = current_stream(device).id();
        Tensor x = randn({2, 32}, DType::float32, device, 2000 + t);
        const std::vector<float> expect = values(mlp->forward(x).y);
        for (int i = 0; i < 50; ++i) wrong += values((*cm)(x).y) != expect;
      });
    }
    for (auto& th : threads) th.join();
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(cm->stats().signatures, 1u);
  // One instance per stream the threads ran on (a thread that ended returns its stream, and a
  // later one may lease it again).
  std::sort(stream_ids.begin(), stream_ids.end());
  const auto streams = std::unique(stream_ids.begin(), stream_ids.end()) - stream_ids.begin();
  EXPECT_EQ(cm->stats().instances, static_cast<std::uint64_t>(streams));
  std::vector<std::shared_ptr<nn::Module>> modules{mlp, enc, conv};
  std::vector<std::shared_ptr<CompiledModule>> compiled{compile(mlp), compile(enc), compile(conv)};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Tensor> xs{randn({1, 32}, DType::float32, device, 3000 + t),
                             randn({1, 5, 32}, DType::float32, device, 4000 + t),
                             randn({1, 8, 20}, DType::float32, device, 5000 + t)};
      std::vector<std::vector<float>> expect;
      for (int k = 0; k < 3; ++k) expect.push_back(values(modules[k]->forward(xs[k]).y));
      for (int i = 0; i < 20; ++i) {
        const int k = (t + i) % 3;
        wrong += values((*compiled[k])(xs[k]).y) != expect[k];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
}

// Threads sharing one stream share its instance and take turns on it.
TEST_P(GraphTest, ThreadsSharingAStreamTakeTurns) {
  auto m = loaded("mlp", kMlp, device);
  auto compiled = compile(m);
  const Stream shared = stream_from_pool(device);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      StreamGuard guard(shared);
      Tensor x = randn({3, 32}, DType::float32, device, 6000 + t);
      const std::vector<float> expect = values(m->forward(x).y);
      for (int i = 0; i < 40; ++i) wrong += values((*compiled)(x).y) != expect;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(compiled->stats().instances, 1u);
}

// A churn of shapes through a cache of 4: the least recently used go, their memory with them,
// and every result stays right.
TEST_P(GraphTest, EvictionUnderAChurnOfShapes) {
  auto m = loaded("mlp", kMlp, device);
  GraphOptions opts;
  opts.cache_size = 4;
  auto compiled = compile(m, opts);
  int wrong = 0;
  for (int round = 0; round < 2; ++round) {
    for (int b = 1; b <= 12; ++b) {
      Tensor x = randn({b, 32}, DType::float32, device, 7000 + b);
      const std::vector<float> expect = values(m->forward(x).y);
      for (int i = 0; i < 2; ++i) wrong += values((*compiled)(x).y) != expect;
      EXPECT_LE(compiled->stats().signatures, 4u);
    }
  }
  EXPECT_EQ(wrong, 0);
  const GraphStats s = compiled->stats();
  EXPECT_EQ(s.evictions, 20u) << "24 new signatures through 4 slots";
  EXPECT_GT(s.bytes, 0u);
  const std::size_t reserved = memory_stats(device).allocated_bytes;
  compiled->clear();
  EXPECT_EQ(compiled->stats().signatures, 0u);
  EXPECT_EQ(compiled->stats().bytes, 0u);
  EXPECT_LT(memory_stats(device).allocated_bytes, reserved) << "cleared instances give their memory back";
}

// Batch buckets: batches of 1 to 9 rows run as 1, 2, 4, 8 and 16 (five signatures), each caller
// gets its own rows, equal to its unpadded eager result up to the GEMMs' rounding.
TEST_P(GraphTest, BatchBucketsServeEveryBatchSizeWithFewSignatures) {
  auto m = loaded("transformer_encoder_layer",
                  R"({"d_model": 32, "nhead": 4, "dim_feedforward": 64, "batch_first": true})", device);
  GraphOptions opts;
  opts.batch_buckets = true;
  auto compiled = compile(m, opts);
  double worst = 0;
  for (int b = 1; b <= 9; ++b) {
    Tensor x = randn({b, 5, 32}, DType::float32, device, 9500 + b);
    nn::Input in(x);
    in.key_padding_mask = zeros({b, 5}, DType::boolean, device);
    const std::vector<float> expect = values(m->forward(in).y);
    for (int i = 0; i < 2; ++i) {
      nn::Output got = (*compiled)(in);
      ASSERT_EQ(got.y.shape(), (Shape{b, 5, 32}));
      const std::vector<float> v = values(got.y);
      for (std::size_t k = 0; k < v.size(); ++k) worst = std::max(worst, static_cast<double>(std::abs(v[k] - expect[k])));
    }
  }
  EXPECT_LT(worst, 1e-4);
  EXPECT_EQ(compiled->stats().signatures, 5u);
  nn::Input bad(randn({3, 5, 32}, DType::float32, device, 1));
  bad.key_padding_mask = zeros({2, 5}, DType::boolean, device);
  EXPECT_THROW((*compiled)(bad), InvalidArgument) << "fields that disagree on the batch";
}

// STREAMPOOL_GRAPH=never (here as an option) runs eagerly; bad options and inputs are refused.
TEST_P(GraphTest, NeverModeAndBadUse) {
  auto m = loaded("mlp", kMlp, device);
  GraphOptions never;
  never.mode = GraphMode::never;
  auto compiled = compile(m, never);
  Tensor x = randn({2, 32}, DType::float32, device, 8);
  EXPECT_EQ(values((*compiled)(x).y), values(m->forward(x).y));
  EXPECT_EQ(compiled->stats().eager, 1u);
  EXPECT_EQ(compiled->stats().instances, 0u);
  EXPECT_THROW(compile(nullptr), InvalidArgument);
  EXPECT_THROW(compile(nn::make_module("mlp", kMlp)), InvalidArgument) << "not loaded";
  GraphOptions zero;
  zero.cache_size = 0;
  EXPECT_THROW(compile(m, zero), InvalidArgument);
  auto c2 = compile(m);
  EXPECT_THROW((*c2)(randn({2, 31}, DType::float32, device, 9)), InvalidArgument) << "the module's own check";
  EXPECT_THROW((*c2)(nn::Input()), InvalidArgument);
}

// BertModel's embedding checks ids with host work, which cannot be captured: on CUDA, auto mode
// runs it eagerly (right results) and always mode raises GraphError naming why. On the CPU
// nothing is captured, so it compiles.
TEST_P(GraphTest, UncapturableModuleFallsBackOrRaises) {
  auto bert = loaded("bert", R"({"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 1,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 16})", device);
  Tensor ids = rand({2, 8}, DType::float32, Device(DeviceKind::cpu), 3, 0.0, 49.0).to(DType::int64).to(device);
  const std::vector<float> expect = values(bert->forward(ids).y);
  auto automatic = compile(bert);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(values((*automatic)(ids).y), expect);
  GraphOptions always;
  always.mode = GraphMode::always;
  auto strict = compile(bert, always);
  if (device.kind == DeviceKind::cuda) {
    EXPECT_EQ(automatic->stats().captures, 0u);
    EXPECT_EQ(automatic->stats().eager, 2u);
    try {
      (*strict)(ids);
      FAIL() << "always mode must raise";
    } catch (const GraphError& e) {
      EXPECT_NE(std::string(e.what()).find("cannot capture BertModel"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("embedding"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_EQ(automatic->stats().replays, 2u);
    for (int i = 0; i < 2; ++i) EXPECT_EQ(values((*strict)(ids).y), expect);
  }
}

// Captures while other threads run eager work, allocate and free memory (the cache released to
// the device) and synchronize: no capture is invalidated and every result is right (the
// thread-local capture facts of ../shared/anchors/capture_threads.cu, kept as a test).
TEST_P(GraphTest, CapturesWhileOtherThreadsAllocateFreeAndSynchronize) {
  auto m = loaded("mlp", kMlp, device);
  auto compiled = compile(m);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, errors{0};
  std::vector<std::thread> busy;
  for (int t = 0; t < 4; ++t) {
    busy.emplace_back([&, t] {
      try {
        Tensor x = randn({3, 32}, DType::float32, device, 9000 + t);
        const std::vector<float> expect = values(m->forward(x).y);
        while (!stop.load()) {
          wrong += values(m->forward(x).y) != expect;  // eager work and a synchronize
          Tensor big = empty({(t + 1) << 18}, DType::float32, device);  // allocations and frees
          big = Tensor();
          if (t == 0) empty_cache(device);  // frees to the device while captures run
          current_stream(device).synchronize();
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++errors;
      }
    });
  }
  for (int b = 1; b <= 12; ++b) {
    Tensor x = randn({b, 32}, DType::float32, device, 9100 + b);
    const std::vector<float> expect = values(m->forward(x).y);
    for (int i = 0; i < 3; ++i) wrong += values((*compiled)(x).y) != expect;
  }
  stop = true;
  for (auto& th : busy) th.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(compiled->stats().instances, 12u);
  EXPECT_EQ(compiled->stats().eager, 0u);
  if (device.kind == DeviceKind::cuda) EXPECT_EQ(compiled->stats().captures, 12u);
}

INSTANTIATE_TEST_SUITE_P(Devices, GraphTest, STREAMPOOL_DEVICES, test::param_name);
