// `streampool bench --server URL` (bench_server.h).
//
// For each model and concurrency N: N threads, each with its own keep-alive connection and one
// request outstanding at a time, for a 1 s warm-up and then the timed window. Requests cycle
// through K = 64 distinct inputs (sequence models: lengths mixed in --lengths); every response is
// checked against its input's reference, the response to that input sent alone before the run
// (so a swapped, truncated or failed result counts as wrong). Reports requests/s and latency
// p50 / p90 / p99 over the window.

#include "bench_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "server/http_client.h"
#ifdef STREAMPOOL_HAS_GRPC
#include <grpcpp/grpcpp.h>

#include "open_inference.grpc.pb.h"
#endif
#include "streampool/dtype.h"
#include "streampool/error.h"

namespace streampool::tools {
namespace {

using nlohmann::json;
using server::HttpClient;
using Clock = std::chrono::steady_clock;

struct Target {
  std::string host;
  unsigned short port = 0;
};

Target parse_url(const std::string& url) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) throw InvalidArgument("--server: '" + url + "' is not http://IPV4:PORT");
  std::string rest = url.substr(prefix.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) throw InvalidArgument("--server: '" + url + "' names no port");
  Target t;
  t.host = rest.substr(0, colon);
  if (t.host == "localhost") t.host = "127.0.0.1";
  const int port = std::atoi(rest.substr(colon + 1).c_str());
  if (port < 1 || port > 65535) throw InvalidArgument("--server: '" + url + "' has no valid port");
  t.port = static_cast<unsigned short>(port);
  return t;
}

struct Case {
  std::string body, headers;  // HTTP
  std::vector<float> reference;
#ifdef STREAMPOOL_HAS_GRPC
  inference::ModelInferRequest grpc;  // the same input as raw_input_contents
#endif
};

// Raw little-endian elements of `dt` as floats.
std::vector<float> raw_floats(const std::string& dt, const char* p, std::size_t n) {
  std::vector<float> v;
  if (dt == "FP32") {
    v.resize(n / 4);
    std::memcpy(v.data(), p, v.size() * 4);
    return v;
  }
  for (std::size_t i = 0; i + 1 < n; i += 2) {
    std::uint16_t b;
    std::memcpy(&b, p + i, 2);
    v.push_back(dt == "FP16" ? half_to_float(b) : bfloat16_to_float(b));
  }
  return v;
}

// The first output of a response as floats (JSON or binary; FP32, FP16, BF16).
std::vector<float> first_output(const server::HttpResponse& r) {
  std::size_t jl = r.body.size();
  const std::string h = r.header("inference-header-content-length");
  if (!h.empty()) jl = std::stoul(h);
  const json j = json::parse(r.body.substr(0, jl));
  const json& o = j.at("outputs").at(0);
  std::vector<float> v;
  if (o.contains("data")) {
    for (const auto& x : o["data"]) v.push_back(x.is_null() ? NAN : x.get<float>());
    return v;
  }
  const std::size_t n = o["parameters"]["binary_data_size"].get<std::size_t>();
  if (jl + n > r.body.size()) throw std::runtime_error("binary output shorter than announced");
  return raw_floats(o.at("datatype"), r.body.data() + jl, n);
}

bool close_to(const std::vector<float>& a, const std::vector<float>& ref, bool half) {
  if (a.size() != ref.size() || a.empty()) return false;
  float scale = 0;
  for (float x : ref) scale = std::max(scale, std::fabs(x));
  const float tol = (half ? 2e-2f : 1e-4f) * (1 + scale);
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(std::fabs(a[i] - ref[i]) <= tol)) return false;
  }
  return true;
}

std::vector<Case> make_cases(const json& meta, const ServerBenchOptions& o, bool binary, std::mt19937_64& g) {
  const json& in = meta.at("inputs").at(0);
  const std::string name = in.at("name"), dt = in.at("datatype");
  std::vector<std::int64_t> shape = in.at("shape").get<std::vector<std::int64_t>>();
  std::vector<Case> cases(64);
  for (Case& c : cases) {
    std::vector<std::int64_t> s = shape;
    s[0] = 1;
    for (std::size_t i = 1; i < s.size(); ++i) {
      if (s[i] < 0) s[i] = o.min_len + static_cast<int>(g() % static_cast<std::uint64_t>(o.max_len - o.min_len + 1));
    }
    std::size_t n = 1;
    for (auto d : s) n *= static_cast<std::size_t>(d);
    std::string raw;
    json data = json::array();
    std::normal_distribution<float> normal;
    for (std::size_t i = 0; i < n; ++i) {
      if (dt == "INT64") {
        const auto id = static_cast<std::int64_t>(1 + g() % 500);  // within any BERT vocabulary here
        raw.append(reinterpret_cast<const char*>(&id), 8);
        data.push_back(id);
      } else {
        const float f = normal(g);
        data.push_back(f);
        if (dt == "FP32") {
          raw.append(reinterpret_cast<const char*>(&f), 4);
        } else {
          const std::uint16_t b = dt == "FP16" ? float_to_half(f) : float_to_bfloat16(f);
          raw.append(reinterpret_cast<const char*>(&b), 2);
        }
      }
    }
#ifdef STREAMPOOL_HAS_GRPC
    c.grpc.set_model_name(meta.at("name").get<std::string>());
    auto* gi = c.grpc.add_inputs();
    gi->set_name(name);
    gi->set_datatype(dt);
    for (auto d : s) gi->add_shape(d);
    c.grpc.add_raw_input_contents(raw);
#endif
    json req{{"inputs", {{{"name", name}, {"datatype", dt}, {"shape", s}}}}};
    if (binary) {
      req["inputs"][0]["parameters"] = {{"binary_data_size", raw.size()}};
      req["parameters"] = {{"binary_data_output", true}};
      const std::string head = req.dump();
      c.body = head + raw;
      c.headers = "Inference-Header-Content-Length: " + std::to_string(head.size()) + "\r\n";
    } else {
      req["inputs"][0]["data"] = data;
      c.body = req.dump();
    }
  }
  return cases;
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// One connection's way of sending a case: its first output as floats, or nullopt on an error
// status. Throws when the connection itself fails.
class Sender {
 public:
  virtual ~Sender() = default;
  virtual std::optional<std::vector<float>> send(const Case& c) = 0;
};

class HttpSender final : public Sender {
 public:
  HttpSender(const Target& t, const std::string& model)
      : client_(t.port, 60000, t.host.c_str()), path_("/v2/models/" + model + "/infer") {}
  std::optional<std::vector<float>> send(const Case& c) override {
    const auto r = client_.request("POST", path_, c.body, c.headers);
    if (r.status != 200) return std::nullopt;
    return first_output(r);
  }

 private:
  HttpClient client_;
  std::string path_;
};

#ifdef STREAMPOOL_HAS_GRPC
std::shared_ptr<grpc::Channel> grpc_channel(const Target& t) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own HTTP/2 connection, like a client process
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(t.host + ":" + std::to_string(t.port), grpc::InsecureChannelCredentials(), args);
}

class GrpcSender final : public Sender {
 public:
  explicit GrpcSender(const Target& t) : stub_(inference::GRPCInferenceService::NewStub(grpc_channel(t))) {}
  std::optional<std::vector<float>> send(const Case& c) override {
    grpc::ClientContext ctx;
    inference::ModelInferResponse r;
    if (!stub_->ModelInfer(&ctx, c.grpc, &r).ok() || r.outputs_size() < 1 || r.raw_output_contents_size() < 1) {
      return std::nullopt;
    }
    const std::string& raw = r.raw_output_contents(0);
    return raw_floats(r.outputs(0).datatype(), raw.data(), raw.size());
  }

 private:
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

// ModelMetadata over gRPC, in the REST metadata's JSON form.
json grpc_metadata(const Target& t, const std::string& model) {
  auto stub = inference::GRPCInferenceService::NewStub(grpc_channel(t));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  inference::ModelMetadataRequest q;
  q.set_name(model);
  inference::ModelMetadataResponse r;
  const grpc::Status s = stub->ModelMetadata(&ctx, q, &r);
  if (!s.ok()) throw InvalidArgument("--models: ModelMetadata of '" + model + "' failed: " + s.error_message());
  json j{{"name", r.name()}, {"inputs", json::array()}, {"outputs", json::array()}};
  for (const auto& i : r.inputs()) j["inputs"].push_back({{"name", i.name()}, {"datatype", i.datatype()}, {"shape", i.shape()}});
  for (const auto& i : r.outputs()) j["outputs"].push_back({{"name", i.name()}, {"datatype", i.datatype()}, {"shape", i.shape()}});
  return j;
}
#endif

std::unique_ptr<Sender> make_sender(const std::string& protocol, const Target& t, const std::string& model) {
#ifdef STREAMPOOL_HAS_GRPC
  if (protocol == "grpc") return std::make_unique<GrpcSender>(t);
#endif
  (void)protocol;
  return std::make_unique<HttpSender>(t, model);
}

}  // namespace

int run_server_bench(const ServerBenchOptions& o) {
  const Target t = parse_url(o.url);
  const bool grpc = o.protocol == "grpc";
  if (o.protocol != "http-binary" && o.protocol != "http-json" && !grpc) {
    throw InvalidArgument("--protocol: '" + o.protocol + "' is not http-binary, http-json or grpc");
  }
#ifndef STREAMPOOL_HAS_GRPC
  if (grpc) throw InvalidArgument("--protocol grpc: this build has no gRPC");
#endif
  if (o.models.empty()) throw InvalidArgument("--models: name the server's models to load");
  const bool binary = o.protocol != "http-json";
  std::ofstream json_out;
  if (!o.json_path.empty()) json_out.open(o.json_path, std::ios::app);
  std::printf("%-14s %-11s %6s %10s %9s %9s %9s %7s\n", "model", "protocol", "conc", "req/s", "p50 ms", "p90 ms",
              "p99 ms", "wrong");
  int status = 0;
  for (const std::string& model : o.models) {
    json meta;
    std::unique_ptr<Sender> probe;
    try {
      if (grpc) {
#ifdef STREAMPOOL_HAS_GRPC
        meta = grpc_metadata(t, model);
#endif
      } else {
        HttpClient c(t.port, 60000, t.host.c_str());
        const auto mr = c.request("GET", "/v2/models/" + model);
        if (mr.status != 200) throw InvalidArgument("--models: the server has no model '" + model + "' (" + mr.body + ")");
        meta = json::parse(mr.body);
      }
      probe = make_sender(o.protocol, t, model);
    } catch (const InvalidArgument&) {
      throw;
    } catch (const std::exception& e) {
      throw InvalidArgument("--server: " + o.url + ": " + e.what());
    }
    const std::string out_dt = meta.at("outputs").at(0).at("datatype");
    const bool half = out_dt != "FP32";
    std::mt19937_64 g(1);
    std::vector<Case> cases = make_cases(meta, o, binary, g);
    for (Case& c : cases) {
      auto r = probe->send(c);
      if (!r) throw InvalidArgument("bench --server: a reference request (one input alone) failed");
      c.reference = std::move(*r);
    }
    for (int conc : o.concurrency) {
      std::atomic<bool> timing{false}, stop{false};
      std::atomic<long> wrong{0}, failed{0};
      std::vector<std::vector<double>> lat(static_cast<std::size_t>(conc));
      std::vector<std::thread> ts;
      for (int i = 0; i < conc; ++i) {
        ts.emplace_back([&, i] {
          try {
            std::unique_ptr<Sender> sender = make_sender(o.protocol, t, model);
            auto& l = lat[static_cast<std::size_t>(i)];
            l.reserve(1 << 16);
            for (std::size_t k = static_cast<std::size_t>(i); !stop.load(std::memory_order_relaxed); ++k) {
              const Case& cs = cases[k % cases.size()];
              const auto a = Clock::now();
              const auto r = sender->send(cs);
              const double ms = std::chrono::duration<double, std::milli>(Clock::now() - a).count();
              const bool timed = timing.load(std::memory_order_relaxed);
              if (!r || !close_to(*r, cs.reference, half)) {
                if (timed) ++wrong;
              } else if (timed && !stop.load(std::memory_order_relaxed)) {
                l.push_back(ms);
              }
            }
          } catch (const std::exception&) {
            ++failed;
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
      timing = true;
      const auto a = Clock::now();
      std::this_thread::sleep_for(std::chrono::duration<double>(o.duration));
      stop = true;
      const double wall = std::chrono::duration<double>(Clock::now() - a).count();
      for (auto& th : ts) th.join();
      std::vector<double> all;
      for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
      const double rps = static_cast<double>(all.size()) / wall;
      const double p50 = percentile(all, 0.5), p90 = percentile(all, 0.9), p99 = percentile(all, 0.99);
      std::printf("%-14s %-11s %6d %10.0f %9.3f %9.3f %9.3f %7ld%s\n", model.c_str(), o.protocol.c_str(), conc, rps, p50,
                  p90, p99, wrong.load(), failed ? "  (connections failed)" : "");
      std::fflush(stdout);
      if (wrong || failed) status = 1;
      if (json_out) {
        json_out << json{{"impl", "streampool-server"}, {"model", model}, {"protocol", o.protocol},
                         {"concurrency", conc}, {"threads", conc}, {"rps", rps}, {"p50_ms", p50}, {"p90_ms", p90},
                         {"p99_ms", p99}, {"requests", all.size()}, {"wrong", wrong.load()},
                         {"failed_connections", failed.load()}, {"lengths", {o.min_len, o.max_len}}}
                        .dump()
                 << "\n";
      }
    }
  }
  if (status) std::printf("bench --server: FAILED: requests failed or differed from their input's reference\n");
  return status;
}

}  // namespace streampool::tools
