// The BatchQueue (batch_queue.h): the MPS suite's batch tests (8 threads x MLP equal to
// sequential results, a pre-norm transformer block equal to direct calls, error propagation
// keeping the exception type, shutdown draining 20 of 20) and ours: 10,000 of 10,000 drained
// under load, deadlines, cancel, priorities, each full-queue policy, padded batches equal to
// unpadded single runs on the golden encoder and BERT cases, 64 clients x 1,000 requests each
// checked against its own expected output, a CPU and a CUDA worker in one queue, malformed
// requests, metrics. Every request has its own input and its own expected output.

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "golden_runner.h"
#include "streampool/streampool.h"
#include "support/work.h"

using namespace streampool;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kScale = 10;  // sanitizers slow every op tenfold: a tenth of the requests
#else
constexpr int kScale = 1;
#endif

const Device kHost(DeviceKind::cpu);

std::shared_ptr<nn::Module> loaded(const char* kind, const std::string& config, const Device& d, DType dt = DType::float32,
                                   std::uint64_t seed = 100) {
  std::shared_ptr<nn::Module> m = nn::make_module(kind, config);
  nn::StateDict sd;
  for (const auto& [name, shape] : m->parameters()) sd[name] = randn(shape, DType::float32, kHost, seed++, 0.0, 0.2);
  m->load_state_dict(sd, d, dt);
  return m;
}

const char* kMlp = R"({"sizes": [32, 64, 16], "activation": "gelu"})";

// A host input, ready to read (its CPU stream work done).
Tensor host_input(const Shape& shape, std::uint64_t seed, DType dt = DType::float32) {
  Tensor t = randn(shape, DType::float32, kHost, seed).to(dt);
  current_stream(kHost).synchronize();
  return t;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

// Batched and single GEMMs may round differently (another row count, another algorithm): a
// few units in the last place of the dtype at the outputs' magnitude (about 1 here).
double tol(DType dt) { return dt == DType::float32 ? 2e-5 : dt == DType::float16 ? 4e-3 : 3e-2; }

// A test module: y = 2x. It logs the first element of each row it sees (the tests put a
// request id there), can hold every batch at a gate, and throws Boom on a row starting with -13.5.
struct Boom : std::runtime_error {
  using std::runtime_error::runtime_error;
};
class Probe : public nn::Module {
 public:
  Probe() : Module("Probe") {}
  nn::Output forward(const nn::Input& in) const override {
    {
      std::unique_lock<std::mutex> lock(mu);
      ++batches_entered;
      cv.notify_all();
      cv.wait(lock, [&] { return open; });
    }
    std::vector<float> v = in.x.to_float_vector();
    const std::int64_t row = in.x.numel() / in.x.size(0);
    std::vector<float> firsts;
    for (std::int64_t r = 0; r < in.x.size(0); ++r) firsts.push_back(v[static_cast<std::size_t>(r * row)]);
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.insert(seen.end(), firsts.begin(), firsts.end());
      batch_rows.push_back(in.x.size(0));
    }
    for (float f : firsts)
      if (f == -13.5f) throw Boom("Probe: row -13.5 is poison");
    return nn::Output{add(in.x, in.x)};
  }
  void close_gate() {
    std::lock_guard<std::mutex> lock(mu);
    open = false;
  }
  void open_gate() {
    {
      std::lock_guard<std::mutex> lock(mu);
      open = true;
    }
    cv.notify_all();
  }
  void wait_entered(int n) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return batches_entered >= n; });
  }
  std::vector<float> seen_rows() {
    std::lock_guard<std::mutex> lock(mu);
    return seen;
  }

  mutable std::mutex mu;  // guards everything below
  mutable std::condition_variable cv;
  mutable bool open = true;
  mutable int batches_entered = 0;
  mutable std::vector<float> seen;
  mutable std::vector<std::int64_t> batch_rows;
};

std::shared_ptr<Probe> probe(const Device& d) {
  auto p = std::make_shared<Probe>();
  p->load_state_dict({}, d);
  return p;
}

// A replica of the Probe whose device has failed (an injected fault): every batch it takes
// throws DeviceError.
class Faulty : public Probe {
 public:
  nn::Output forward(const nn::Input& in) const override {
    throw DeviceError("Faulty: injected fault on its device (batch of " + std::to_string(in.x.size(0)) + " rows)");
  }
};

// A (1, 4) host row whose first element is `id`.
Tensor row(float id) { return from_vector(std::vector<float>{id, 1, 2, 3}, {1, 4}, kHost); }

class BatchQueueTest : public test::DeviceTest {
 protected:
  // Each request its own input and its own expected output (one direct call each, here).
  struct Case {
    std::vector<Tensor> inputs;
    std::vector<std::vector<float>> expected;
  };
  Case mlp_case(const nn::Module& m, int n, std::uint64_t seed, bool on_device = false) {
    Case c;
    for (int i = 0; i < n; ++i) {
      Tensor x = host_input({1 + i % 3, 32}, seed + static_cast<std::uint64_t>(i));
      c.expected.push_back(m.forward(nn::Input(x.to(device))).y.to_float_vector());
      c.inputs.push_back(on_device ? x.to(device) : x);
    }
    if (on_device) current_stream(device).synchronize();
    return c;
  }
};

}  // namespace

// MPS suite, batch test 1: 8 threads submit MLP requests; every result equals the sequential one.
TEST_P(BatchQueueTest, EightThreadsMlpEqualsSequential) {
  auto m = loaded("mlp", kMlp, device);
  BatchOptions o;
  o.max_batch_size = 16;
  o.max_delay = 200us;
  BatchQueue q(m, o);
  const int per = 50;
  Case c = mlp_case(*m, 8 * per, 1000);
  std::vector<double> err(8, 0);
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      std::vector<BatchFuture> fs;
      for (int i = 0; i < per; ++i) fs.push_back(q.submit(c.inputs[static_cast<std::size_t>(t * per + i)]));
      for (int i = 0; i < per; ++i) {
        nn::Output out = fs[static_cast<std::size_t>(i)].get();
        EXPECT_EQ(out.y.device(), kHost);
        err[t] = std::max(err[t], max_diff(out.y.to_float_vector(), c.expected[static_cast<std::size_t>(t * per + i)]));
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int t = 0; t < 8; ++t) EXPECT_LE(err[t], tol(DType::float32)) << "thread " << t;
  const BatchQueueMetrics mt = q.metrics();
  EXPECT_EQ(mt.completed, 8u * per);
  EXPECT_LT(mt.batches, 8u * per) << "requests were never batched together";
}

// Device-resident requests (on CUDA: inputs on the GPU stay there; results are views there).
TEST_P(BatchQueueTest, DeviceResidentRequestsGetDeviceResults) {
  auto m = loaded("mlp", kMlp, device);
  BatchOptions o;
  o.max_batch_size = 32;
  o.max_delay = 200us;
  BatchQueue q(m, o);
  Case c = mlp_case(*m, 200, 2000, /*on_device=*/true);
  std::vector<std::thread> ts;
  std::vector<double> err(4, 0);
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = t; i < 200; i += 4) {
        nn::Output out = q.submit(c.inputs[static_cast<std::size_t>(i)]).get();
        EXPECT_EQ(out.y.device(), device);
        err[t] = std::max(err[t], max_diff(out.y.to_float_vector(), c.expected[static_cast<std::size_t>(i)]));
      }
    });
  }
  for (auto& t : ts) t.join();
  for (double e : err) EXPECT_LE(e, tol(DType::float32));
}

// MPS suite, batch test 2: a pre-norm transformer block through the queue equals direct calls.
TEST_P(BatchQueueTest, PreNormTransformerBlockEqualsDirectCalls) {
  auto m = loaded("transformer_encoder_layer",
                  R"({"d_model": 64, "nhead": 4, "dim_feedforward": 128, "activation": "gelu", "norm_first": true, "batch_first": true})", device);
  BatchOptions o;
  o.max_batch_size = 8;
  o.max_delay = 500us;
  BatchQueue q(m, o);
  std::vector<Tensor> xs;
  std::vector<std::vector<float>> ref;
  for (int i = 0; i < 24; ++i) {
    xs.push_back(host_input({1, 10, 64}, 300 + static_cast<std::uint64_t>(i)));
    ref.push_back(m->forward(nn::Input(xs.back().to(device))).y.to_float_vector());
  }
  std::vector<BatchFuture> fs;
  for (auto& x : xs) fs.push_back(q.submit(x));
  for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_LE(max_diff(fs[i].get().y.to_float_vector(), ref[i]), tol(DType::float32)) << i;
}

// MPS suite, batch test 3: an exception in a batch reaches every future of that batch with its
// own type and message; the queue goes on serving.
TEST_P(BatchQueueTest, BatchErrorKeepsItsTypeAndTheQueueGoesOn) {
  auto p = probe(device);
  BatchOptions o;
  o.max_batch_size = 4;
  BatchQueue q(p, o);
  p->close_gate();
  BatchFuture first = q.submit(row(1));  // held at the gate: the next four queue up together
  p->wait_entered(1);
  std::vector<BatchFuture> poisoned;
  for (float id : {10.f, 11.f, -13.5f, 12.f}) poisoned.push_back(q.submit(row(id)));
  p->open_gate();
  EXPECT_EQ(first.get().y.to_float_vector()[0], 2.0f);
  for (auto& f : poisoned) {
    EXPECT_THROW(
        {
          try {
            f.get();
          } catch (const Boom& e) {
            EXPECT_NE(std::string(e.what()).find("poison"), std::string::npos);
            throw;
          }
        },
        Boom);
    EXPECT_EQ(f.status(), RequestStatus::failed);
  }
  // And it serves the next requests.
  for (float id : {20.f, 21.f}) EXPECT_EQ(q.submit(row(id)).get().y.to_float_vector()[0], 2 * id);
  EXPECT_EQ(q.metrics().failed, 4u);
}

// MPS suite, batch test 4: close() drains 20 of 20; ours: 10,000 of 10,000 from 8 threads.
TEST_P(BatchQueueTest, ShutdownDrainsEveryAcceptedRequest) {
  for (int total : {20, 10000 / kScale}) {
    auto p = probe(device);
    BatchOptions o;
    o.max_batch_size = 32;
    auto q = std::make_unique<BatchQueue>(p, o);
    const int threads = 8;
    std::vector<std::vector<BatchFuture>> fs(threads);
    std::latch go(threads + 1);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        go.arrive_and_wait();
        for (int i = t; i < total; i += threads) fs[t].push_back(q->submit(row(static_cast<float>(i))));
      });
    }
    go.arrive_and_wait();
    for (auto& t : ts) t.join();
    q->close();  // while most are still waiting
    int done = 0;
    std::set<float> got;
    for (auto& v : fs) {
      for (auto& f : v) {
        ASSERT_TRUE(f.ready()) << "close() returned with a request unfulfilled";
        got.insert(f.get().y.to_float_vector()[0] / 2);
        ++done;
      }
    }
    EXPECT_EQ(done, total);
    EXPECT_EQ(static_cast<int>(got.size()), total) << "a result was lost or duplicated";
    EXPECT_THROW(q->submit(row(1)), QueueClosedError);
    EXPECT_EQ(q->metrics().completed, static_cast<std::uint64_t>(total));
  }
}

// The destructor closes: every future is fulfilled after the queue is gone.
TEST_P(BatchQueueTest, DestructionDrains) {
  auto p = probe(device);
  std::vector<BatchFuture> fs;
  {
    BatchQueue q(p);
    for (int i = 0; i < 100; ++i) fs.push_back(q.submit(row(static_cast<float>(i))));
  }
  for (int i = 0; i < 100; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].get().y.to_float_vector()[0], 2.0f * i);
}

// A request whose deadline passes while the worker is busy fails with TimeoutError at once
// (not when the worker is next free), and is never run.
TEST_P(BatchQueueTest, DeadlineExpiresWhileWorkersAreBusyAndTheRequestIsNotRun) {
  auto p = probe(device);
  BatchQueue q(p);
  p->close_gate();
  BatchFuture busy = q.submit(row(1));
  p->wait_entered(1);
  SubmitOptions so;
  so.timeout = 20ms;
  const auto t0 = std::chrono::steady_clock::now();
  BatchFuture late = q.submit(row(77), so);
  EXPECT_EQ(late.wait_for(5s), std::future_status::ready);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 20ms);
  EXPECT_FALSE(busy.ready()) << "the timeout waited for the running batch";
  EXPECT_EQ(late.status(), RequestStatus::timed_out);
  p->open_gate();  // before any blocking get: a failure above must not hang the test
  EXPECT_THROW(late.get(), TimeoutError);
  busy.get();
  EXPECT_EQ(q.submit(row(2)).get().y.to_float_vector()[0], 4.0f);
  const auto seen = p->seen_rows();
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 77.0f), 0) << "the expired request ran";
  EXPECT_EQ(q.metrics().timed_out, 1u);
}

// A timeout too long for the clock (a client's "as long as it takes", INT64_MAX microseconds)
// is no deadline: the request runs, it does not wrap around into an expired one.
TEST_P(BatchQueueTest, TimeoutBeyondTheClockIsNoDeadline) {
  auto p = probe(device);
  BatchQueue q(p);
  SubmitOptions so;
  so.timeout = std::chrono::microseconds::max();
  EXPECT_EQ(q.submit(row(21), so).get().y.to_float_vector()[0], 42.0f);
  so.timeout = std::chrono::hours(24 * 365 * 200000);  // 200,000 years: within int64, past the clock
  EXPECT_EQ(q.submit(row(22), so).get().y.to_float_vector()[0], 44.0f);
  EXPECT_EQ(q.metrics().timed_out, 0u);
}

// cancel() removes a waiting request (never run); a finished one cannot be cancelled.
TEST_P(BatchQueueTest, CancelRemovesAWaitingRequest) {
  auto p = probe(device);
  BatchQueue q(p);
  p->close_gate();
  BatchFuture busy = q.submit(row(1));
  p->wait_entered(1);
  BatchFuture victim = q.submit(row(55));
  BatchFuture keeper = q.submit(row(56));
  EXPECT_TRUE(victim.cancel());
  EXPECT_FALSE(victim.cancel());
  EXPECT_EQ(victim.status(), RequestStatus::cancelled);
  p->open_gate();  // before any blocking get: a failure above must not hang the test
  EXPECT_THROW(victim.get(), CancelledError);
  EXPECT_EQ(keeper.get().y.to_float_vector()[0], 112.0f);
  EXPECT_FALSE(busy.cancel());
  const auto seen = p->seen_rows();
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 55.0f), 0);
  EXPECT_EQ(q.metrics().cancelled, 1u);
}

// Higher priority first; within a priority, earliest deadline first, then arrival.
TEST_P(BatchQueueTest, PriorityThenEarliestDeadlineThenArrival) {
  auto p = probe(device);
  BatchOptions o;
  o.max_batch_size = 1;  // one request per batch: the run order is the scheduling order
  BatchQueue q(p, o);
  p->close_gate();
  BatchFuture busy = q.submit(row(0));
  p->wait_entered(1);
  auto at = [](int ms) {
    SubmitOptions s;
    s.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30) + std::chrono::milliseconds(ms);
    return s;
  };
  SubmitOptions high;
  high.priority = 5;
  std::vector<BatchFuture> fs;
  fs.push_back(q.submit(row(1)));               // no deadline, priority 0
  fs.push_back(q.submit(row(2), at(300)));      // deadline, later
  fs.push_back(q.submit(row(3), at(100)));      // deadline, earlier
  fs.push_back(q.submit(row(4), high));         // priority 5
  fs.push_back(q.submit(row(5)));               // no deadline, after 1
  p->open_gate();
  for (auto& f : fs) f.get();
  busy.get();
  EXPECT_EQ(p->seen_rows(), (std::vector<float>{0, 4, 3, 2, 1, 5}));
}

// Each full-queue policy: reject at once; block with a timeout; block until there is room.
TEST_P(BatchQueueTest, FullQueuePolicies) {
  // A queue of max_queue 2 made full: one request held running at the gate, two waiting.
  struct Full {
    std::shared_ptr<Probe> p;
    std::unique_ptr<BatchQueue> q;
    BatchFuture running, a, b;
  };
  auto full = [&](FullPolicy policy, std::chrono::microseconds timeout) {
    BatchOptions o;
    o.max_queue = 2;
    o.max_batch_size = 1;
    o.full_policy = policy;
    o.full_timeout = timeout;
    Full f;
    f.p = probe(device);
    f.q = std::make_unique<BatchQueue>(f.p, o);
    f.p->close_gate();
    f.running = f.q->submit(row(1));
    f.p->wait_entered(1);
    f.a = f.q->submit(row(2));
    f.b = f.q->submit(row(3));
    return f;
  };
  {
    Full f = full(FullPolicy::reject, 0us);
    EXPECT_EQ(f.q->metrics().queue_depth, 2u);
    EXPECT_THROW(f.q->submit(row(4)), QueueFullError);
    f.p->open_gate();
    f.running.get();
    f.a.get();
    f.b.get();
    EXPECT_EQ(f.q->metrics().rejected, 1u);
  }
  {
    Full f = full(FullPolicy::block, 30ms);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(f.q->submit(row(4)), QueueFullError);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
    f.p->open_gate();
    f.running.get();
  }
  {
    Full f = full(FullPolicy::block, 0us);
    std::atomic<bool> returned{false};
    BatchFuture c;
    std::thread blocked([&] {
      c = f.q->submit(row(4));
      returned = true;
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(returned) << "submit did not block on a full queue";
    f.p->open_gate();
    blocked.join();
    EXPECT_EQ(c.get().y.to_float_vector()[0], 8.0f);
  }
}

// Malformed requests fail alone, at submit, naming what is wrong; the queue goes on.
TEST_P(BatchQueueTest, MalformedRequestsFailAloneAtSubmit) {
  auto m = loaded("mlp", kMlp, device);
  BatchOptions o;
  o.max_batch_size = 8;
  BatchQueue q(m, o);
  auto message = [&](nn::Input in) -> std::string {
    try {
      q.submit(std::move(in));
    } catch (const InvalidArgument& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(message(nn::Input()).find("undefined"), std::string::npos);
  EXPECT_NE(message(host_input({1, 31}, 1)).find("32"), std::string::npos);
  EXPECT_NE(message(host_input({1, 32}, 1, DType::float16)).find("float32"), std::string::npos);
  EXPECT_NE(message(host_input({9, 32}, 1)).find("max_batch_size"), std::string::npos);
  nn::Input masked(host_input({1, 32}, 1));
  masked.key_padding_mask = from_vector(std::vector<bool>{false}, {1, 1}, kHost);
  EXPECT_NE(message(masked).find("key_padding_mask"), std::string::npos);
  Tensor good = host_input({2, 32}, 5);
  auto ref = m->forward(nn::Input(good.to(device))).y.to_float_vector();
  EXPECT_LE(max_diff(q.submit(good).get().y.to_float_vector(), ref), tol(DType::float32));
  EXPECT_EQ(q.metrics().rejected, 5u);
}

TEST_P(BatchQueueTest, BadOptionsAreRefused) {
  auto m = loaded("mlp", kMlp, device);
  auto refused = [&](BatchOptions o) { EXPECT_THROW(BatchQueue(m, o), InvalidArgument); };
  BatchOptions o;
  o.max_batch_size = 0;
  refused(o);
  o = {};
  o.num_workers = 0;
  refused(o);
  o = {};
  o.pipeline_depth = 0;
  refused(o);
  o = {};
  o.length_buckets = {64, 32};
  refused(o);
  o = {};
  o.max_delay = -1us;
  refused(o);
  std::shared_ptr<const nn::Module> unloaded = nn::make_module("mlp", kMlp);
  EXPECT_THROW(BatchQueue{unloaded}, InvalidArgument);
  auto seq_first = loaded("multihead_attention", R"({"embed_dim": 16, "num_heads": 2, "batch_first": false})", device);
  EXPECT_THROW(BatchQueue{seq_first}, InvalidArgument);
}

// Padded batches equal unpadded single runs: the golden encoder and BERT cases, requests of
// mixed lengths cut from the case's input, each against its own single run.
TEST_P(BatchQueueTest, PaddedBatchesEqualUnpaddedSingleRuns) {
  const std::string dir = test::source_dir() + "/tests/data/golden";
  const std::vector<DType> dtypes = device.kind == DeviceKind::cpu
                                        ? std::vector<DType>{DType::float32}
                                        : std::vector<DType>{DType::float32, DType::float16, DType::bfloat16};
  int cases = 0;
  for (const golden::Case& c : golden::load_manifest(dir)) {
    if (c.kind != "transformer_encoder_layer" && c.kind != "bert") continue;
    for (DType dt : dtypes) {
      SafetensorsFile f = SafetensorsFile::open(dir + "/" + c.file);
      std::shared_ptr<nn::Module> m = nn::make_module(c.kind, c.config.dump());
      nn::StateDict sd;
      for (const auto& p : c.params) sd[p] = f.load(p, kHost);
      m->load_state_dict(sd, device, dt);
      const bool bert = c.kind == "bert";
      Tensor full_x = f.load(bert ? "input_ids" : "input", kHost);
      if (!bert) full_x = full_x.to(dt);
      const std::int64_t S = full_x.size(1);
      BatchOptions o;
      o.max_batch_size = 16;
      o.max_delay = 20ms;
      BatchQueue q(m, o);
      std::vector<nn::Input> requests;  // every request prepared (and its reference computed) first,
      std::vector<BatchFuture> fs;      // then all submitted at once: they batch however slow the device
      std::vector<std::vector<float>> ref;
      int i = 0;
      for (std::int64_t b = 0; b < full_x.size(0); ++b) {
        for (std::int64_t len : {S, S - 3, S / 2, std::int64_t{1}, S - 1}) {
          // Request i: row b cut to `len`, its values moved by i so that every request differs.
          Tensor x = full_x.slice(0, b, b + 1).slice(1, 0, len).contiguous();
          if (bert) {
            auto ids = x.to_vector<std::int64_t>();
            for (auto& id : ids) id = (id + 3 * i) % c.config.value("vocab_size", 1000);
            x = from_vector(ids, x.shape(), kHost);
          } else {
            auto v = x.to_float_vector();
            for (auto& e : v) e = e + 0.01f * static_cast<float>(i);
            x = from_vector(v, x.shape(), kHost).to(dt);
          }
          current_stream(kHost).synchronize();
          nn::Input in(x);
          if (bert && i % 2 == 1) in.token_type_ids = full(x.shape(), 1.0, DType::int64, kHost);
          if (!bert && i % 3 == 1 && len > 1) {  // a request with its own mask: its last key padded
            std::vector<bool> pad(static_cast<std::size_t>(len), false);
            pad.back() = true;
            in.key_padding_mask = from_vector(pad, {1, len}, kHost);
          }
          current_stream(kHost).synchronize();
          nn::Input on_dev(in.x.to(device));
          if (in.token_type_ids.defined()) on_dev.token_type_ids = in.token_type_ids.to(device);
          if (in.key_padding_mask.defined()) on_dev.key_padding_mask = in.key_padding_mask.to(device);
          nn::Output single = m->forward(on_dev);
          ref.push_back(single.y.to_float_vector());
          if (bert) {
            auto pooled = single.pooled.to_float_vector();
            ref.back().insert(ref.back().end(), pooled.begin(), pooled.end());
          }
          // On a GPU, every other request is device-resident: the device gather pads those.
          if (device.kind != DeviceKind::cpu && i % 2 == 0) {
            in = on_dev;
            current_stream(device).synchronize();
          }
          requests.push_back(in);
          ++i;
        }
      }
      for (auto& in : requests) fs.push_back(q.submit(in));
      for (std::size_t k = 0; k < fs.size(); ++k) {
        nn::Output out = fs[k].get();
        auto got = out.y.to_float_vector();
        if (bert) {
          auto pooled = out.pooled.to_float_vector();
          got.insert(got.end(), pooled.begin(), pooled.end());
        }
        EXPECT_LE(max_diff(got, ref[k]), tol(dt)) << c.name << " " << dtype_name(dt) << " request " << k;
      }
      const BatchQueueMetrics mt = q.metrics();
      EXPECT_LT(mt.batches, fs.size()) << c.name << ": no request was batched with another";
      ++cases;
    }
  }
  EXPECT_GE(cases, 3);
}

// Length buckets: one long request does not pad a batch of short ones.
TEST_P(BatchQueueTest, LengthBucketsKeepShortRequestsTogether) {
  auto m = loaded("transformer_encoder_layer", R"({"d_model": 32, "nhead": 2, "dim_feedforward": 64, "batch_first": true})", device);
  BatchOptions o;
  o.max_batch_size = 64;
  o.max_delay = 20ms;
  o.length_buckets = {8, 64};
  BatchQueue q(m, o);
  std::vector<BatchFuture> fs;
  std::vector<std::vector<float>> ref;
  for (int i = 0; i < 9; ++i) {
    Tensor x = host_input({1, i == 4 ? 60 : 4 + i % 4, 32}, 900 + static_cast<std::uint64_t>(i));
    ref.push_back(m->forward(nn::Input(x.to(device))).y.to_float_vector());
    fs.push_back(q.submit(x));
  }
  for (std::size_t i = 0; i < fs.size(); ++i) EXPECT_LE(max_diff(fs[i].get().y.to_float_vector(), ref[i]), tol(DType::float32));
  EXPECT_GE(q.metrics().batches, 2u) << "the long request shared a batch with the short ones";
  EXPECT_THROW(q.submit(host_input({1, 65, 32}, 1)), InvalidArgument);  // above the largest bucket
}

// Conv1d cannot pad (the next layer would see the padding): requests of different lengths
// batch only with their own length, and each gets its own result.
TEST_P(BatchQueueTest, ConvRequestsBatchOnlyWithTheirOwnLength) {
  auto m = loaded("sequential",
                  R"({"layers": [{"kind": "conv1d", "in_channels": 8, "out_channels": 16, "kernel_size": 5, "padding": 2},
                                 {"kind": "relu"},
                                 {"kind": "conv1d", "in_channels": 16, "out_channels": 4, "kernel_size": 3, "padding": 1}]})",
                  device);
  BatchOptions o;
  o.max_batch_size = 16;
  o.max_delay = 2ms;
  BatchQueue q(m, o);
  std::vector<BatchFuture> fs;
  std::vector<std::vector<float>> ref;
  std::vector<Tensor> xs;
  for (int i = 0; i < 24; ++i) {
    xs.push_back(host_input({1 + i % 2, 8, 20 + 7 * (i % 3)}, 1200 + static_cast<std::uint64_t>(i)));
    ref.push_back(m->forward(nn::Input(xs.back().to(device))).y.to_float_vector());
  }
  for (const auto& x : xs) fs.push_back(q.submit(x));  // all at once: they batch however slow the device
  for (std::size_t i = 0; i < fs.size(); ++i) EXPECT_LE(max_diff(fs[i].get().y.to_float_vector(), ref[i]), tol(DType::float32)) << i;
  const BatchQueueMetrics mt = q.metrics();
  EXPECT_GE(mt.batches, 3u) << "lengths were mixed in one batch";
  EXPECT_LT(mt.batches, 24u) << "no request was batched with another";
}

// 64 client threads x 1,000 requests, each with its own input and expected output: no result
// lost, duplicated or swapped.
TEST_P(BatchQueueTest, SixtyFourClientsEachRequestItsOwnResult) {
  auto p = probe(device);
  BatchOptions o;
  o.max_batch_size = 128;
  o.num_workers = 2;
  BatchQueue q(p, o);
  const int clients = 64, per = 1000 / kScale;
  std::atomic<int> wrong{0}, done{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < clients; ++t) {
    ts.emplace_back([&, t] {
      std::vector<BatchFuture> window;
      std::vector<float> ids;
      for (int i = 0; i < per; ++i) {
        const float id = static_cast<float>(t * 100000 + i);
        window.push_back(q.submit(from_vector(std::vector<float>{id, -id, id / 2, 7}, {1, 4}, kHost)));
        ids.push_back(id);
        if (window.size() == 8 || i == per - 1) {  // 8 in flight per client
          for (std::size_t k = 0; k < window.size(); ++k) {
            auto v = window[k].get().y.to_float_vector();
            const float id_k = ids[k];
            if (v != std::vector<float>{2 * id_k, -2 * id_k, id_k, 14}) ++wrong;
            ++done;
          }
          window.clear();
          ids.clear();
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(done.load(), clients * per);
  const BatchQueueMetrics mt = q.metrics();
  EXPECT_EQ(mt.completed, static_cast<std::uint64_t>(clients * per));
  EXPECT_GT(mt.batch_size.mean(), 1.5) << "requests were not batched";
}

// Futures: ready() never blocks, on_ready runs once (now if already ready), wait_for times out.
TEST_P(BatchQueueTest, FutureReadyCallbackAndWaitFor) {
  auto p = probe(device);
  BatchQueue q(p);
  p->close_gate();
  BatchFuture f = q.submit(row(3));
  p->wait_entered(1);
  EXPECT_FALSE(f.ready());
  EXPECT_EQ(f.wait_for(10ms), std::future_status::timeout);
  std::atomic<int> calls{0};
  f.on_ready([&] { ++calls; });
  EXPECT_THROW(f.on_ready([] {}), InvalidArgument);
  p->open_gate();
  f.wait();
  // The callback runs on the completing thread before or after wait() returns: wait for it.
  for (int i = 0; i < 1000 && calls == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(calls.load(), 1);
  BatchFuture g = q.submit(row(4));
  g.wait();
  std::atomic<int> now{0};
  g.on_ready([&] { ++now; });  // ready already: runs here, at once
  EXPECT_EQ(now.load(), 1);
  EXPECT_EQ(f.get().y.to_float_vector()[0], 6.0f);
  EXPECT_EQ(f.get().y.to_float_vector()[0], 6.0f);  // shared: get() again
  EXPECT_THROW(BatchFuture().get(), InvalidArgument);
}

// metrics() and metrics_text(): counters and histograms (not only sums), Triton-style names.
TEST_P(BatchQueueTest, MetricsCountAndExportHistograms) {
  auto p = probe(device);
  BatchOptions o;
  o.name = "probe\"q";
  BatchQueue q(p, o);
  for (int i = 0; i < 10; ++i) q.submit(row(static_cast<float>(i))).get();
  const BatchQueueMetrics m = q.metrics();
  EXPECT_EQ(m.submitted, 10u);
  EXPECT_EQ(m.completed, 10u);
  EXPECT_EQ(m.request_us.count, 10u);
  EXPECT_EQ(m.queue_us.count, 10u);
  EXPECT_EQ(m.compute_us.count, m.batches);
  EXPECT_GT(m.request_us.sum, 0);
  EXPECT_GE(m.request_us.quantile(0.99), m.request_us.quantile(0.5));
  const std::string t = q.metrics_text();
  for (const char* name : {"streampool_request_success_total{queue=\"probe\\\"q\"} 10",
                           "# TYPE streampool_request_duration_us histogram", "streampool_queue_duration_us_bucket",
                           "streampool_compute_duration_us_sum", "streampool_batch_size_count",
                           "streampool_request_duration_us_bucket{queue=\"probe\\\"q\",le=\"+Inf\"} 10",
                           "streampool_queue_depth{queue=\"probe\\\"q\"} 0"}) {
    EXPECT_NE(t.find(name), std::string::npos) << name << "\n" << t;
  }
}

// A queue made in the parent refuses submit() in a forked child (its workers do not exist there).
TEST_P(BatchQueueTest, ForkedChildSubmitIsRefused) {
  auto p = probe(device);
  BatchQueue q(p);
  q.submit(row(1)).get();
  const Tensor made_before = row(2);  // device use in the child is refused by itself (ForkedChildError)
  const pid_t pid = fork();
  if (pid == 0) {
    int rc = 3;
    try {
      q.submit(made_before);
      rc = 1;
    } catch (const QueueClosedError&) {
      rc = 0;
    } catch (...) {
      rc = 2;
    }
    _exit(rc);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(q.submit(row(4)).get().y.to_float_vector()[0], 8.0f);  // the parent goes on
}

// A worker on the CPU and one on CUDA in one queue: both serve, every result right.
TEST_P(BatchQueueTest, CpuAndCudaWorkersInOneQueue) {
  if (device.kind == DeviceKind::cpu) GTEST_SKIP() << "needs a CUDA device beside the CPU";
  auto on_cpu = loaded("mlp", kMlp, kHost);
  auto on_gpu = loaded("mlp", kMlp, device);  // the same weights (same seeds)
  std::vector<Replica> rs(2);
  rs[0].module = on_cpu;
  rs[1].module = on_gpu;
  BatchOptions o;
  o.max_batch_size = 4;
  BatchQueue q(rs, o);
  Case c = mlp_case(*on_gpu, 400, 5000);  // expected from the GPU (mlp_case runs on `device`)
  std::vector<std::thread> ts;
  std::vector<double> err(8, 0);
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      for (int i = t; i < 400; i += 8) {
        err[t] = std::max(err[t], max_diff(q.submit(c.inputs[static_cast<std::size_t>(i)]).get().y.to_float_vector(),
                                           c.expected[static_cast<std::size_t>(i)]));
      }
    });
  }
  for (auto& t : ts) t.join();
  for (double e : err) EXPECT_LE(e, 1e-4);  // CPU and GPU GEMMs round differently
  const auto per = q.metrics().worker_batches;
  ASSERT_EQ(per.size(), 2u);
  EXPECT_GT(per[0], 0u) << "the CPU worker served nothing";
  EXPECT_GT(per[1], 0u) << "the CUDA worker served nothing";
}

// Issue "Several GPUs", on one device: a queue of two replicas, one of them faulty. Every
// request either gets its own right result from the healthy replica or fails with the faulty
// replica's DeviceError, never anything else; both replicas take batches, and the queue goes on
// serving from the healthy one. (The two-GPU form needs a machine with two GPUs.)
TEST_P(BatchQueueTest, AFaultyReplicaFailsOnlyItsOwnBatches) {
  auto healthy = probe(device);
  auto faulty = std::make_shared<Faulty>();
  faulty->load_state_dict({}, device);
  std::vector<Replica> rs(2);
  rs[0].module = healthy;
  rs[1].module = faulty;
  BatchOptions o;
  o.max_batch_size = 4;
  BatchQueue q(rs, o);
  std::atomic<int> ok{0}, failed{0}, wrong{0};
  auto run = [&](int t, int n) {
    for (int i = 0; i < n; ++i) {
      const float id = static_cast<float>(t * 1000 + i + 1);
      BatchFuture f = q.submit(row(id));
      try {
        const std::vector<float> y = f.get().y.to_float_vector();
        (y == std::vector<float>{2 * id, 2, 4, 6} ? ok : wrong)++;
      } catch (const DeviceError& e) {
        (std::string(e.what()).find("injected fault") != std::string::npos ? failed : wrong)++;
      } catch (...) {
        wrong++;
      }
    }
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) ts.emplace_back(run, t, 60);
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(ok.load(), 0) << "the healthy replica served nothing";
  EXPECT_GT(failed.load(), 0) << "the faulty replica took no batch: the test cannot see a fault";
  EXPECT_EQ(ok.load() + failed.load(), 480);
  EXPECT_EQ(q.metrics().failed, static_cast<std::uint64_t>(failed.load()));
  const auto per = q.metrics().worker_batches;
  ASSERT_EQ(per.size(), 2u);
  EXPECT_GT(per[0], 0u);
  EXPECT_GT(per[1], 0u);
  // After the faults the healthy replica still answers.
  ok = 0;
  run(9, 40);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Devices, BatchQueueTest, STREAMPOOL_DEVICES, test::param_name);
