// CompiledModule: the cache of (signature, stream) instances, their planning, capture and replay.

#include "streampool/graph.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/launch.h"
#include "core/backend_interface.h"
#include "memory/graph_arena.h"
#include "ops/gemm_workspace.h"
#include "streampool/allocator.h"
#include "streampool/error.h"
#include "streampool/settings.h"
#include "streampool/stream_pool.h"

namespace streampool {
namespace {

constexpr int kFields = 4;  // the Input's tensors, in this order
template <typename In>  // nn::Input or const nn::Input
auto& field(In& in, int i) {
  switch (i) {
    case 0: return in.x;
    case 1: return in.key_padding_mask;
    case 2: return in.attention_mask;
    default: return in.token_type_ids;
  }
}

// What identifies a signature without building its string: each field's dtype and shape.
struct Shapes {
  std::int8_t dtype[kFields];  // -1: absent
  std::int8_t ndim[kFields];
  std::int64_t dims[kFields][8];
  Device device;

  Shapes() : dtype{-1, -1, -1, -1}, ndim{}, dims{} {}
  explicit Shapes(const nn::Input& in) : dims{} {  // in.x defined
    device = in.x.device();
    for (int i = 0; i < kFields; ++i) {
      const Tensor& t = field(in, i);
      const bool ok = t.defined() && t.dim() <= 8;
      dtype[i] = t.defined() ? static_cast<std::int8_t>(t.dtype()) : -1;
      ndim[i] = ok ? static_cast<std::int8_t>(t.dim()) : (t.defined() ? -2 : 0);  // -2: never matched
      if (ok)
        for (std::int64_t d = 0; d < t.dim(); ++d) dims[i][d] = t.size(d);
    }
  }
  bool operator==(const Shapes& o) const {
    if (device != o.device) return false;
    for (int i = 0; i < kFields; ++i) {
      if (dtype[i] != o.dtype[i] || ndim[i] != o.ndim[i] || ndim[i] < 0) return false;
      for (int d = 0; d < ndim[i]; ++d)
        if (dims[i][d] != o.dims[i][d]) return false;
    }
    return true;
  }
};

// "cuda:0|float32(1, 256)|||": the device, then each field's dtype and shape ("" when absent).
std::string signature(const nn::Input& in) {
  std::string k = in.x.device().str();
  for (int i = 0; i < kFields; ++i) {
    const Tensor& t = field(in, i);
    k += '|';
    if (t.defined()) k += std::string(dtype_name(t.dtype())) + shape_str(t.shape());
  }
  return k;
}

// One signature on one stream: its planned memory and, on CUDA, its graph.
struct Instance {
  std::mutex mu;  // guards everything below: one call at a time (threads sharing a stream take turns)
  bool built = false;
  DataPtr memory;             // the arena (Note [Graph arenas])
  DataPtr workspace;          // CUDA: its GEMMs' workspace (ops/gemm_workspace.h)
  std::size_t planned = 0;    // bytes of it the forward uses
  nn::Input static_in;        // CUDA: the buffers the graph reads
  nn::Output static_out;      // CUDA: the arena tensors the graph writes
  std::unique_ptr<detail::GraphExec> exec;  // CUDA

  std::size_t bytes() const {
    std::size_t b = memory.size() + workspace.size();
    for (int i = 0; i < kFields; ++i)
      if (field(static_in, i).defined()) b += field(static_in, i).nbytes();
    return b;
  }
};

struct Entry {
  std::mutex mu;  // guards instances, failure
  std::unordered_map<std::uint32_t, std::shared_ptr<Instance>> instances;  // by stream id
  std::string failure;                     // why this signature cannot be captured; "" if it can
  std::atomic<std::uint64_t> last_used{0};  // the cache's clock at its latest call
};

std::atomic<std::uint64_t> next_state_id{1};  // ids of CompiledModule states, never reused

// CUDA captures graphs; the CPU replays its forward (Backend::capture returns nullptr there).
bool backend_has_graphs(const Device& dev) { return dev.kind == DeviceKind::cuda; }

}  // namespace

struct CompiledModule::State {
  std::shared_ptr<const nn::Module> module;
  GraphOptions options;
  mutable std::shared_mutex mu;  // guards entries (shared for lookups, exclusive to insert, evict, clear)
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries;
  // Counters, each updated on its own (GraphStats reads them one by one). calls and replays
  // change on every call: they are spread over cache lines, one per group of threads.
  struct alignas(64) Shard {
    std::atomic<std::uint64_t> calls{0}, replays{0};
  };
  static constexpr int kShards = 16;
  Shard shards[kShards];
  std::atomic<std::uint64_t> tick{0}, instances{0}, captures{0}, evictions{0}, eager{0};
  std::atomic<std::int64_t> last_kernels{-1}, last_copies{-1};  // the latest capture's body (GraphStats)
  // Bumped whenever an entry leaves the map (evict, clear): threads' memos of instances are
  // then stale (see forward()).
  std::atomic<std::uint64_t> generation{0};
  std::uint64_t id = 0;  // unique per State, never reused: the threads' memos name it
  static Shard& shard_of_this_thread(State& st) {
    static std::atomic<unsigned> next{0};
    thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
    return st.shards[mine % kShards];
  }
  std::atomic<bool> warned{false};  // the one fallback warning of this module was printed

  std::shared_ptr<Entry> entry_for(const std::string& key) {
    const std::uint64_t now = tick.fetch_add(1, std::memory_order_relaxed) + 1;
    {
      std::shared_lock<std::shared_mutex> lock(mu);
      auto it = entries.find(key);
      if (it != entries.end()) {
        it->second->last_used.store(now, std::memory_order_relaxed);
        return it->second;
      }
    }
    std::unique_lock<std::shared_mutex> lock(mu);
    auto [it, inserted] = entries.try_emplace(key);
    if (inserted) {
      it->second = std::make_shared<Entry>();
      const auto cap = static_cast<std::size_t>(options.cache_size.value_or(settings().graph_cache_size));
      while (entries.size() > cap) {
        auto oldest = entries.end();
        for (auto e = entries.begin(); e != entries.end(); ++e) {
          if (e->first == key) continue;
          if (oldest == entries.end() ||
              e->second->last_used.load(std::memory_order_relaxed) < oldest->second->last_used.load(std::memory_order_relaxed)) {
            oldest = e;
          }
        }
        // Calls in flight keep their instance alive; its memory goes back when the last ends.
        entries.erase(oldest);
        evictions.fetch_add(1, std::memory_order_relaxed);
        generation.fetch_add(1, std::memory_order_release);
      }
    }
    it->second->last_used.store(now, std::memory_order_relaxed);
    return it->second;
  }

  // STREAMPOOL_GRAPH=always: GraphError; auto: one warning per module, then the caller runs eagerly.
  void refuse_or_warn(const std::string& why, GraphMode mode) {
    if (mode == GraphMode::always) throw GraphError("compile: " + why + " (STREAMPOOL_GRAPH=always)");
    if (!warned.exchange(true)) {
      std::fprintf(stderr, "streampool: %s; running it eagerly (STREAMPOOL_GRAPH=auto)\n", why.c_str());
    }
  }

  nn::Output eager_fallback(const nn::Input& in, const std::string& why, GraphMode mode) {
    refuse_or_warn(why, mode);
    eager.fetch_add(1, std::memory_order_relaxed);
    return module->forward(in);
  }

  // The first call of a signature on a stream: an eager run that plans the memory, then (CUDA)
  // the capture. Returns the eager run's result.
  nn::Output build(Entry& e, Instance& inst, const nn::Input& in, const Device& dev, GraphMode mode,
                   const std::string& sig) {
    detail::GraphArena counter;
    nn::Output out;
    {
      detail::ArenaScope scope(&counter, dev);
      out = module->forward(in);
      // The capture below makes the outputs dense: count that too.
      if (backend_has_graphs(dev)) {
        (void)out.y.contiguous();
        if (out.pooled.defined()) (void)out.pooled.contiguous();
      }
    }
    inst.planned = counter.planned();
    inst.memory = allocate(dev, std::max<std::size_t>(inst.planned, 1));
    instances.fetch_add(1, std::memory_order_relaxed);
    if (!backend_has_graphs(dev)) {
      inst.built = true;  // the CPU replays the forward itself, in the arena
      return out;
    }
    try {
      detail::GraphIo io;
      for (int i = 0; i < kFields; ++i) {
        const Tensor& t = field(in, i);
        if (!t.defined()) continue;
        field(inst.static_in, i) = empty(t.shape(), t.dtype(), dev);
        io.inputs.push_back({field(inst.static_in, i).data_ptr(), t.nbytes()});
      }
      detail::GraphArena arena(inst.memory.get(), inst.planned);
      inst.workspace = allocate(dev, detail::kGemmWorkspaceBytes);
      // Captured on a stream of its own: other threads sharing the caller's stream go on
      // running eagerly on it meanwhile, and none of their work lands in the graph.
      detail::CaptureStreamScope capture_stream(dev);
      detail::GemmWorkspaceScope workspace(inst.workspace.get());
      inst.exec = detail::backend(dev.kind).capture(capture_stream.stream(), io, [&] {
        detail::ArenaScope scope(&arena, dev);
        nn::Output o = module->forward(inst.static_in);
        // The copy-out nodes read whole buffers: a view (a transposed output) is made dense here.
        inst.static_out.y = o.y.contiguous();
        io.outputs.push_back({inst.static_out.y.data_ptr(), inst.static_out.y.nbytes()});
        if (o.pooled.defined()) {
          inst.static_out.pooled = o.pooled.contiguous();
          io.outputs.push_back({inst.static_out.pooled.data_ptr(), inst.static_out.pooled.nbytes()});
        }
      });
      if (!inst.exec) throw GraphError("the " + dev.str() + " backend returned no graph");
      captures.fetch_add(1, std::memory_order_relaxed);
      last_kernels.store(inst.exec->body_kernels(), std::memory_order_relaxed);
      last_copies.store(inst.exec->body_copies(), std::memory_order_relaxed);
    } catch (const std::exception& ex) {
      inst.memory = DataPtr();
      inst.workspace = DataPtr();
      inst.static_in = nn::Input();
      inst.static_out = nn::Output();
      const std::string why = "cannot capture " + std::string(module->name()) + " for inputs " + sig + ": " + ex.what();
      {
        std::lock_guard<std::mutex> lock(e.mu);
        e.failure = why;
      }
      refuse_or_warn(why, mode);
      return out;  // the eager run's result is right
    }
    inst.built = true;
    return out;
  }

  nn::Output replay(Instance& inst, const nn::Input& in, const Device& dev) {
    shard_of_this_thread(*this).replays.fetch_add(1, std::memory_order_relaxed);
    if (!inst.exec) {
      // The CPU: the forward again, every intermediate in the planned memory; the caller gets copies.
      detail::GraphArena arena(inst.memory.get(), inst.planned);
      nn::Output o;
      {
        detail::ArenaScope scope(&arena, dev);
        o = module->forward(in);
      }
      nn::Output r;
      r.y = o.y.clone();
      if (o.pooled.defined()) r.pooled = o.pooled.clone();
      return r;
    }
    Tensor dense[kFields];  // inputs made contiguous, alive until the copies are queued
    const void* src[kFields];
    int n = 0;
    for (int i = 0; i < kFields; ++i) {
      if (!field(inst.static_in, i).defined()) continue;
      dense[n] = field(in, i).contiguous();
      src[n] = dense[n].data_ptr();
      ++n;
    }
    nn::Output r;
    r.y = empty(inst.static_out.y.shape(), inst.static_out.y.dtype(), dev);
    void* dst[2] = {r.y.data_ptr(), nullptr};
    if (inst.static_out.pooled.defined()) {
      r.pooled = empty(inst.static_out.pooled.shape(), inst.static_out.pooled.dtype(), dev);
      dst[1] = r.pooled.data_ptr();
    }
    detail::launch(
        "graph replay", dev, [] {}, [&](void*) { inst.exec->replay(detail::current_impl(dev), src, dst); });
    return r;
  }
};

CompiledModule::CompiledModule(std::shared_ptr<const nn::Module> module, const GraphOptions& options)
    : state_(std::make_unique<State>()) {
  if (!module) throw InvalidArgument("compile: null module");
  if (options.batch_buckets && options.max_bucket < 1) {
    throw InvalidArgument("compile: max_bucket must be at least 1, not " + std::to_string(options.max_bucket));
  }
  if (options.cache_size && *options.cache_size < 1) {
    throw InvalidArgument("compile: cache_size must be at least 1, not " + std::to_string(*options.cache_size));
  }
  state_->options = options;
  state_->id = next_state_id.fetch_add(1, std::memory_order_relaxed);
  if (!module->loaded()) throw InvalidArgument("compile: " + std::string(module->name()) + " is not loaded");
  state_->module = std::move(module);
}

CompiledModule::~CompiledModule() = default;

const nn::Module& CompiledModule::module() const { return *state_->module; }

namespace {

// The calling thread's latest instances, so that a repeated call finds its instance without
// building the signature's string or touching the shared map and its locks. Weak: an evicted
// or cleared instance is freed when no call holds it, memo or not.
struct Memo {
  std::uint64_t state_id = 0;  // 0: empty
  std::uint64_t generation = 0;
  std::uint32_t stream_id = 0;
  Shapes shapes;
  std::weak_ptr<Instance> instance;
  std::weak_ptr<Entry> entry;
  unsigned hits = 0;
};
constexpr int kMemos = 4;
thread_local Memo tls_memos[kMemos];
thread_local unsigned tls_next_memo = 0;
}  // namespace

nn::Output CompiledModule::forward(const nn::Input& in) const {
  const GraphOptions& o = state_->options;
  if (o.batch_buckets && in.x.defined() && in.x.dim() >= 1) {
    const std::int64_t rows = in.x.size(0);
    std::int64_t bucket = 1;
    while (bucket < rows) bucket *= 2;
    if (rows > 0 && bucket != rows && bucket <= o.max_bucket) {
      // Every field must share the batch: pad each along dimension 0, run, trim the outputs.
      nn::Input padded;
      for (int i = 0; i < kFields; ++i) {
        const Tensor& t = field(in, i);
        if (!t.defined()) continue;
        if (t.dim() < 1 || t.size(0) != rows) {
          throw InvalidArgument("compiled " + std::string(state_->module->name()) +
                                " with batch buckets: every input needs the batch (" + std::to_string(rows) +
                                " rows) along dimension 0, got " + t.str());
        }
        Shape shape = t.shape();
        shape[0] = bucket;
        Tensor p = zeros(shape, t.dtype(), t.device());
        p.slice(0, 0, rows).copy_from(t);
        field(padded, i) = p;
      }
      nn::Output out = forward_unbucketed(padded);
      out.y = out.y.slice(0, 0, rows);
      if (out.pooled.defined()) out.pooled = out.pooled.slice(0, 0, rows);
      return out;
    }
  }
  return forward_unbucketed(in);
}

nn::Output CompiledModule::forward_unbucketed(const nn::Input& in) const {
  State& st = *state_;
  State::shard_of_this_thread(st).calls.fetch_add(1, std::memory_order_relaxed);
  const GraphMode mode = st.options.mode.value_or(settings().graph);
  if (mode == GraphMode::never || !in.x.defined()) {
    st.eager.fetch_add(1, std::memory_order_relaxed);
    return st.module->forward(in);  // which names an undefined input
  }
  const Device dev = in.x.device();
  for (int i = 1; i < kFields; ++i) {
    const Tensor& t = field(in, i);
    if (t.defined() && t.device() != dev) {
      throw InvalidArgument("compiled " + std::string(st.module->name()) + ": an input is on " + t.device().str() +
                            ", x on " + dev.str());
    }
  }
  const std::uint32_t sid = current_stream(dev).id();
  const Shapes shapes(in);
  const std::uint64_t generation = st.generation.load(std::memory_order_acquire);
  for (Memo& m : tls_memos) {
    if (m.state_id != st.id || m.generation != generation || m.stream_id != sid || !(m.shapes == shapes)) continue;
    std::shared_ptr<Instance> inst = m.instance.lock();
    if (!inst) break;
    if (++m.hits % 64 == 0) {  // keep the entry's recency for the LRU without a shared write per call
      if (auto e = m.entry.lock()) e->last_used.store(st.tick.fetch_add(1, std::memory_order_relaxed) + 1);
    }
    std::lock_guard<std::mutex> lock(inst->mu);
    return st.replay(*inst, in, dev);
  }
  const std::string sig = signature(in);
  std::shared_ptr<Entry> e = st.entry_for(sig);
  std::shared_ptr<Instance> inst;
  std::string failure;
  {
    std::lock_guard<std::mutex> lock(e->mu);
    failure = e->failure;
    if (failure.empty()) {
      auto& slot = e->instances[sid];
      if (!slot) slot = std::make_shared<Instance>();
      inst = slot;
    }
  }
  if (!failure.empty()) return st.eager_fallback(in, failure, mode);
  std::lock_guard<std::mutex> lock(inst->mu);
  nn::Output out;
  if (!inst->built) {
    {
      std::lock_guard<std::mutex> elock(e->mu);
      failure = e->failure;  // another stream's capture of this signature may have failed meanwhile
    }
    if (!failure.empty()) return st.eager_fallback(in, failure, mode);
    out = st.build(*e, *inst, in, dev, mode, sig);
  } else {
    out = st.replay(*inst, in, dev);
  }
  if (inst->built) {
    Memo& m = tls_memos[tls_next_memo++ % kMemos];
    m.state_id = st.id;
    m.generation = generation;
    m.stream_id = sid;
    m.shapes = shapes;
    m.instance = inst;
    m.entry = e;
    m.hits = 0;
  }
  return out;
}

GraphStats CompiledModule::stats() const {
  const State& st = *state_;
  GraphStats s;
  for (const auto& sh : st.shards) {
    s.calls += sh.calls.load();
    s.replays += sh.replays.load();
  }
  s.instances = st.instances.load();
  s.captures = st.captures.load();
  s.evictions = st.evictions.load();
  s.eager = st.eager.load();
  s.kernels_per_call = st.last_kernels.load();
  s.copies_per_call = st.last_copies.load();
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::shared_lock<std::shared_mutex> lock(st.mu);
    s.signatures = st.entries.size();
    for (const auto& [key, e] : st.entries) entries.push_back(e);
  }
  for (const auto& e : entries) {
    std::vector<std::shared_ptr<Instance>> insts;
    {
      std::lock_guard<std::mutex> lock(e->mu);
      for (const auto& [sid, inst] : e->instances) insts.push_back(inst);
    }
    for (const auto& inst : insts) {
      std::lock_guard<std::mutex> lock(inst->mu);
      if (inst->built) s.bytes += inst->bytes();
    }
  }
  return s;
}

void CompiledModule::clear() {
  std::unique_lock<std::shared_mutex> lock(state_->mu);
  state_->entries.clear();
  state_->generation.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<CompiledModule> compile(std::shared_ptr<const nn::Module> module, const GraphOptions& options) {
  return std::make_shared<CompiledModule>(std::move(module), options);
}

}  // namespace streampool
