#pragma once
// The models of a repository, loaded and each behind its own BatchQueue, and the protocol's
// operations on them (health, metadata, infer), independent of the transport: the HTTP front end
// (http_server.h) maps requests onto these.
//
// Shared state: the model table is built by the constructor and never changes after it (read
// from any thread without a lock); `ready_` and each model's counters are atomics; the queues
// guard themselves.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/model_repository.h"
#include "server/protocol.h"
#include "streampool/batch_queue.h"
#include "streampool/error.h"

namespace streampool::server {

// A model or version the server does not have (HTTP 404).
class NotFoundError : public Error {
 public:
  explicit NotFoundError(const std::string& what) : Error(what) {}
};

struct TensorMetadata {
  std::string name;
  DType dtype = DType::float32;
  std::vector<std::int64_t> shape;  // -1: any size (dimension 0 is the batch)
  bool optional = false;
};

struct Model {
  ModelConfig config;
  std::vector<TensorMetadata> inputs, outputs;
  std::unique_ptr<BatchQueue> queue;
  std::int64_t max_len = 0;  // > 0: the longest sequence
  bool ids = false;          // BERT: integer token ids, attention_mask, token_type_ids
  mutable std::atomic<std::uint64_t> success{0}, failure{0};
};

struct ServerOptions {
  std::vector<Device> devices;  // empty: each model's own device, else the CPU
  int workers = 0;              // > 0: workers per replica for every model
};

class InferenceServer {
 public:
  // Loads every model of the repository: weights onto each device, one probe request through
  // the module (its output shapes, and a warm start), and its BatchQueue. Throws ConfigError,
  // FormatError (weights), InvalidArgument naming the model.
  InferenceServer(const std::string& repository, const ServerOptions& options);
  ~InferenceServer();  // close()

  bool ready() const { return ready_.load(); }
  void set_ready(bool ready) { ready_.store(ready); }

  std::string server_metadata() const;  // GET /v2
  // The model of that name (and version, if not empty); throws NotFoundError.
  const Model& model(std::string_view name, std::string_view version = {}) const;
  std::string model_metadata(const Model& model) const;  // GET /v2/models/{name}
  const std::vector<std::unique_ptr<Model>>& models() const { return models_; }

  // Checks the request against the model's metadata (names, datatypes, shapes) and submits it;
  // throws InvalidArgument (bad request), QueueFullError, QueueClosedError. The inputs' bytes
  // move into the queued tensors (no copy): afterwards request.inputs[i].data is empty.
  BatchFuture submit(const Model& model, InferRequest& request) const;
  // The response of a ready future: its outputs as the request asked for them. Throws the
  // request's error. Counts success and failure.
  InferResponse respond(const Model& model, const InferRequest& request, const BatchFuture& future) const;

  // Per-model counts and every queue's metrics, in the Prometheus text format.
  std::string metrics_text() const;
  // Closes every queue: what they accepted runs to the end. Idempotent.
  void close();

 private:
  std::vector<std::unique_ptr<Model>> models_;
  std::atomic<bool> ready_{false};
};

}  // namespace streampool::server
