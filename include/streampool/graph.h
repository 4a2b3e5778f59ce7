#pragma once
// compile(): a module run as a captured graph, replayed from any number of threads.
//
// A CompiledModule has the module's call form. Each call looks up its input signature (the
// shapes and dtypes of the Input's tensors, and the device) and the calling thread's current
// stream. The first call of a signature on a stream runs eagerly and plans the instance's memory
// (Note [Graph arenas]); on CUDA it then captures the forward into a graph whose inputs and
// outputs are fixed buffers. Later calls replay: on CUDA one graph launch that copies the
// caller's inputs in and the results out, on the CPU the forward again with every intermediate
// in the planned memory (no allocation but the result). Results are new tensors the caller owns.
//
// Instances are per (signature, stream): threads on their own streams never wait for each other,
// and threads sharing a stream take turns. A capture holds only its own instance, so it never
// blocks other threads' replays or eager work. The cache keeps STREAMPOOL_GRAPH_CACHE_SIZE
// signatures, least recently used evicted (their memory returns to the allocator).
// STREAMPOOL_GRAPH: auto (default) falls back to eager, with one warning on stderr per module,
// where a module cannot be captured (BertModel today: the embedding's id check is host work);
// always raises GraphError instead; never runs eagerly.

#include <cstdint>
#include <memory>
#include <optional>

#include "streampool/nn/module.h"
#include "streampool/settings.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

struct GraphStats {
  std::uint64_t calls = 0;
  std::uint64_t instances = 0;  // (signature, stream) instances built: one plan (and one capture on CUDA) each
  std::uint64_t captures = 0;   // CUDA graphs captured
  std::uint64_t replays = 0;    // calls served by an instance built before
  std::uint64_t evictions = 0;  // signatures evicted (least recently used)
  std::uint64_t eager = 0;      // calls run eagerly: STREAMPOOL_GRAPH=never, or not capturable
  std::size_t signatures = 0;   // signatures cached now
  std::size_t bytes = 0;        // device memory the cached instances hold now
  // What the latest captured graph's forward launches per replay, as CUDA counted its nodes:
  // kernels, and copies or fills (the replay's copies in and out not included); -1 before the
  // first capture. One graph launch replaces them all.
  std::int64_t kernels_per_call = -1;
  std::int64_t copies_per_call = -1;
};

struct GraphOptions {
  std::optional<GraphMode> mode;         // default: STREAMPOOL_GRAPH
  std::optional<int> cache_size;         // signatures kept, >= 1; default: STREAMPOOL_GRAPH_CACHE_SIZE
  // Batch buckets: a call whose inputs have B rows along dimension 0 runs padded (with zeros) to
  // the next power of two, at most max_bucket rows, and gets its B rows back: a few graphs serve
  // every batch size. For modules whose dimension 0 is the batch and whose rows are independent
  // (all of streampool's, MultiheadAttention / TransformerEncoderLayer with batch_first). Results
  // equal the unpadded ones up to the GEMMs' rounding for another row count.
  bool batch_buckets = false;
  std::int64_t max_bucket = 1024;  // batches above it run at their own size
};

class CompiledModule {
 public:
  // `module` must be loaded; it is shared, read-only, with whoever else holds it.
  explicit CompiledModule(std::shared_ptr<const nn::Module> module, const GraphOptions& options = {});
  ~CompiledModule();
  CompiledModule(const CompiledModule&) = delete;
  CompiledModule& operator=(const CompiledModule&) = delete;

  nn::Output forward(const nn::Input& in) const;
  nn::Output operator()(const nn::Input& in) const { return forward(in); }

  GraphStats stats() const;
  // Drops every cached instance (calls in flight finish on theirs).
  void clear();
  const nn::Module& module() const;

 private:
  nn::Output forward_unbucketed(const nn::Input& in) const;
  struct State;
  std::unique_ptr<State> state_;
};

std::shared_ptr<CompiledModule> compile(std::shared_ptr<const nn::Module> module, const GraphOptions& options = {});

}  // namespace streampool
STREAMPOOL_API_END
