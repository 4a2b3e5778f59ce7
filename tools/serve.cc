// `streampool serve`: the Open Inference Protocol over HTTP for a model repository.

#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "server/http_server.h"
#ifdef STREAMPOOL_HAS_GRPC
#include "server/grpc_server.h"
#endif
#include "server/inference_server.h"
#include "streampool/error.h"

namespace streampool::tools {
namespace {

struct ServeOptions {
  std::string repository;
  std::string address = "0.0.0.0";
  int http_port = 8000;
  int grpc_port = 8001;  // -1: no gRPC
  bool grpc_port_given = false;
  std::string devices;
  int threads = 4;
  int workers = 0;
  std::size_t max_request_bytes = std::size_t{64} << 20;
  std::size_t max_connections = 1024;
  double timeout_s = 30;
  double drain_timeout_s = 30;
};

int run_serve(const ServeOptions& o) {
  if (o.http_port < 0 || o.http_port > 65535) throw InvalidArgument("--http-port must be 0 to 65535");
  if (o.grpc_port < -1 || o.grpc_port > 65535) throw InvalidArgument("--grpc-port must be -1 (none) or 0 to 65535");
#ifndef STREAMPOOL_HAS_GRPC
  if (o.grpc_port_given && o.grpc_port >= 0) {
    throw InvalidArgument("--grpc-port: this build has no gRPC (apt-get install libgrpc++-dev protobuf-compiler-grpc, then rebuild)");
  }
#endif
  if (o.threads < 1 || o.threads > 256) throw InvalidArgument("--threads must be 1 to 256");
  if (o.workers < 0 || o.workers > 16) throw InvalidArgument("--workers must be 0 to 16");
  if (o.timeout_s <= 0 || o.drain_timeout_s < 0) throw InvalidArgument("--timeout-s must be positive, --drain-timeout-s not negative");
  if (o.max_connections < 1) throw InvalidArgument("--max-connections must be at least 1");
  if (o.max_request_bytes < 1024) throw InvalidArgument("--max-request-bytes must be at least 1024");
  // SIGTERM and SIGINT are taken here by sigwait: blocked before any thread starts, so every
  // I/O and queue thread inherits the mask and none of them is interrupted by the signal.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  server::ServerOptions so;
  for (const std::string& d : split_list(o.devices)) so.devices.push_back(Device::parse(d));
  so.workers = o.workers;
  server::InferenceServer core(o.repository, so);
  server::HttpOptions ho;
  ho.address = o.address;
  ho.port = static_cast<unsigned short>(o.http_port);
  ho.threads = o.threads;
  ho.max_request_bytes = o.max_request_bytes;
  ho.max_connections = o.max_connections;
  ho.timeout = std::chrono::milliseconds(static_cast<long>(o.timeout_s * 1000));
  server::HttpServer http(core, ho);
#ifdef STREAMPOOL_HAS_GRPC
  std::unique_ptr<server::GrpcServer> grpc;
  if (o.grpc_port >= 0) {
    server::GrpcOptions go;
    go.address = o.address;
    go.port = static_cast<unsigned short>(o.grpc_port);
    go.max_request_bytes = o.max_request_bytes;
    grpc = std::make_unique<server::GrpcServer>(core, go);
  }
  const std::string grpc_text = grpc ? "; gRPC on " + o.address + ":" + std::to_string(grpc->port()) : "";
#else
  const std::string grpc_text = "; no gRPC in this build";
#endif
  std::string names;
  for (const auto& m : core.models()) names += (names.empty() ? "" : ", ") + m->config.name;
  std::printf("streampool serve: %zu model(s) (%s)%s; HTTP on %s:%u\n", core.models().size(), names.c_str(),
              grpc_text.c_str(), o.address.c_str(), static_cast<unsigned>(http.port()));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  // Readiness goes false first, then no new connection, then every received request finishes.
  core.set_ready(false);
  std::fprintf(stderr, "streampool serve: %s: not ready; finishing the requests received\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  http.stop_accepting();
  const auto drain = std::chrono::milliseconds(static_cast<long>(o.drain_timeout_s * 1000));
  const auto drain_start = std::chrono::steady_clock::now();
#ifdef STREAMPOOL_HAS_GRPC
  if (grpc) grpc->shutdown(drain);  // no new calls; the calls under way finish
#endif
  const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - drain_start);
  const bool drained = http.drain(drain > spent ? drain - spent : std::chrono::milliseconds(0));
  if (!drained) {
    for (const auto& m : core.models()) {
      const BatchQueueMetrics q = m->queue->metrics();
      std::fprintf(stderr, "streampool serve: model %s: %llu submitted, %llu completed, %llu failed, %llu waiting\n",
                   m->config.name.c_str(), static_cast<unsigned long long>(q.submitted),
                   static_cast<unsigned long long>(q.completed), static_cast<unsigned long long>(q.failed),
                   static_cast<unsigned long long>(q.queue_depth));
    }
  }
  http.stop();
  const server::HttpStats st = http.stats();
  std::fprintf(stderr, "streampool serve: %llu connections, %llu requests received, %llu answered\n",
               static_cast<unsigned long long>(st.connections), static_cast<unsigned long long>(st.received),
               static_cast<unsigned long long>(st.answered));
  if (!drained) {
    std::fprintf(stderr, "streampool serve: %lld requests still running after --drain-timeout-s %.0f: stopped anyway\n",
                 static_cast<long long>(st.in_flight), o.drain_timeout_s);
    return 1;
  }
  std::fprintf(stderr, "streampool serve: stopped\n");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model repository over the Open Inference Protocol (KServe v2, HTTP/REST)");
  cmd->add_option("--model-repository", o->repository, "The model repository: one folder per model (config.json + safetensors)")->required();
  cmd->add_option("--address", o->address, "Address to listen on (default 0.0.0.0)");
  cmd->add_option("--http-port", o->http_port, "HTTP port (default 8000; 0: any free port, printed at start)");
  cmd->add_option("--grpc-port", o->grpc_port, "gRPC port (default 8001; 0: any free port, printed at start; -1: no gRPC)")
      ->each([o](const std::string&) { o->grpc_port_given = true; });
  cmd->add_option("--devices", o->devices, "Comma-separated devices every model runs on, one replica each (default: each model's own \"device\", else the CPU)");
  cmd->add_option("--threads", o->threads, "HTTP I/O threads (default 4)");
  cmd->add_option("--workers", o->workers, "BatchQueue workers per replica for every model (default: each model's \"workers\")");
  cmd->add_option("--max-request-bytes", o->max_request_bytes, "Largest request accepted, headers and body (default 67108864); larger ones get 413");
  cmd->add_option("--max-connections", o->max_connections, "Open connections at most (default 1024); past it a connection gets 503 and is closed");
  cmd->add_option("--timeout-s", o->timeout_s, "Seconds to receive one request or send one response; an idle keep-alive connection is closed after it (default 30)");
  cmd->add_option("--drain-timeout-s", o->drain_timeout_s, "On SIGTERM, seconds to wait for the received requests (default 30)");
  cmd->callback([o, exit_code] { *exit_code = run_serve(*o); });
}

}  // namespace streampool::tools
