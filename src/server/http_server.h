#pragma once
// The Open Inference Protocol over HTTP/1.1 (Boost.Beast on Asio: asynchronous, a few I/O
// threads for any number of keep-alive connections), in front of an InferenceServer.
//
// Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/{m}[/versions/{v}],
// .../ready, POST .../infer (JSON or the binary tensor data extension), GET /metrics.
// Every infer request goes through its model's BatchQueue; the response is written when its
// future is ready (the queue's completer only posts it back to the connection's I/O thread).
//
// Bounds: a request larger than max_request_bytes gets 413; one not received within
// timeout (slow or half-open) is dropped; past max_connections a new connection gets 503;
// malformed HTTP gets 400. Nothing a client sends ends the process or blocks another client.
//
// Shared state: the connection and request counters are atomics (in_flight is also waited on
// under drain_mu); each I/O thread runs its own io_context, and a connection lives on the one it
// was accepted onto, the acceptor on the first (Note [One io_context per I/O thread]).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "server/inference_server.h"

namespace streampool::server {

struct HttpOptions {
  std::string address = "0.0.0.0";
  unsigned short port = 8000;  // 0: any free port (port() tells which)
  int threads = 4;             // I/O threads
  std::size_t max_request_bytes = std::size_t{64} << 20;
  std::size_t max_connections = 1024;
  std::chrono::milliseconds timeout{30000};  // to receive one request (or wait for it), and to send one response
};

struct HttpStats {
  std::uint64_t connections = 0;  // accepted so far
  std::uint64_t received = 0;     // whole requests read
  std::uint64_t answered = 0;     // responses to them written to the socket
  std::int64_t in_flight = 0;     // received, response not written yet
};

class HttpServer {
 public:
  // Binds and starts serving; throws ConfigError if the address cannot be bound.
  HttpServer(InferenceServer& server, const HttpOptions& options);
  ~HttpServer();  // stop()

  unsigned short port() const;
  HttpStats stats() const;
  // Closes the listening socket: no new connection; open ones go on.
  void stop_accepting();
  // Waits until every request received so far has its response written; false on timeout.
  bool drain(std::chrono::milliseconds timeout);
  // Stops accepting, closes every connection, joins the I/O threads. Idempotent.
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace streampool::server
