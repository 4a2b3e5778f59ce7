#pragma once
// The Open Inference Protocol's gRPC service (GRPCInferenceService, open_inference.proto) in
// front of an InferenceServer: ServerLive, ServerReady, ModelReady, ServerMetadata,
// ModelMetadata, ModelInfer. Built where Debian's gRPC++ and its protoc plugin are found.
//
// ModelInfer uses gRPC's callback API: the handler checks and submits the request and returns;
// the BatchQueue's on_ready finishes the RPC (copying the outputs into raw_output_contents), so no
// thread waits per request. A client deadline becomes the request's queue deadline. Status codes:
// INVALID_ARGUMENT (the fault named), NOT_FOUND, RESOURCE_EXHAUSTED (queue full), UNAVAILABLE
// (stopping), DEADLINE_EXCEEDED, INTERNAL.
//
// Shared state: none of its own beyond gRPC's; each RPC's request and response live in its call.

#include <chrono>
#include <memory>
#include <string>

#include "server/inference_server.h"

namespace streampool::server {

struct GrpcOptions {
  std::string address = "0.0.0.0";
  unsigned short port = 8001;  // 0: any free port (port() tells which)
  std::size_t max_request_bytes = std::size_t{64} << 20;
};

class GrpcServer {
 public:
  // Binds and starts serving; throws ConfigError if the address cannot be bound.
  GrpcServer(InferenceServer& server, const GrpcOptions& options);
  ~GrpcServer();  // shutdown(0)

  unsigned short port() const;
  // Stops taking new calls and waits, at most `timeout`, for the calls under way (their queue
  // results included); then cancels what is left. Idempotent.
  void shutdown(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace streampool::server
