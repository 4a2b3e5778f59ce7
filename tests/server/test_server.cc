// `streampool serve` (src/server/): the protocol's request parser, every HTTP endpoint against
// the example model repository, hostile input, many keep-alive clients, and SIGTERM under load.
// Each request has its own input and is checked against its own expected output, computed by
// calling the module directly.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "server/http_client.h"
#include "server/http_server.h"
#include "server/server_test_support.h"
#include "server/inference_server.h"
#include "server/protocol.h"
#include "streampool/nn/registry.h"
#include "streampool/streampool.h"

namespace streampool {
namespace {

using nlohmann::json;
using server::parse_infer_request;
using server::HttpClient;
using server::HttpResponse;

using namespace server_test;  // NOLINT: kRepo, kCpu, kTol, input_for, max_diff

// ---------------------------------------------------------------- the protocol's parser

TEST(ProtocolTest, JsonDataFlatAndNested) {
  auto r = parse_infer_request(
      R"({"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4.5]]},)"
      R"({"name":"ids","datatype":"INT64","shape":[3],"data":[1,-2,3]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}],)"
      R"("parameters":{"timeout":500,"priority":2}})",
      std::nullopt);
  EXPECT_EQ(r.id, "a");
  ASSERT_EQ(r.inputs.size(), 2u);
  float f[4];
  ASSERT_EQ(r.inputs[0].data.size(), sizeof f);
  std::memcpy(f, r.inputs[0].data.data(), sizeof f);
  EXPECT_EQ(f[3], 4.5f);
  std::int64_t ids[3];
  std::memcpy(ids, r.inputs[1].data.data(), sizeof ids);
  EXPECT_EQ(ids[1], -2);
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_TRUE(r.outputs[0].binary);
  EXPECT_EQ(r.timeout_us, 500);
  EXPECT_EQ(r.priority, 2);
}

TEST(ProtocolTest, BinaryDataFollowsTheJson) {
  const std::string head =
      R"({"inputs":[{"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},)"
      R"({"name":"b","datatype":"UINT8","shape":[3],"parameters":{"binary_data_size":3}}]})";
  float a[2] = {1.5f, -2.0f};
  std::string body = head + std::string(reinterpret_cast<const char*>(a), 8) + std::string("\x01\x02\x03", 3);
  auto r = parse_infer_request(body, head.size());
  ASSERT_EQ(r.inputs.size(), 2u);
  EXPECT_EQ(r.inputs[0].data, std::string(reinterpret_cast<const char*>(a), 8));
  EXPECT_EQ(r.inputs[1].data, std::string("\x01\x02\x03", 3));
}

// Every malformed or hostile body raises InvalidArgument naming the fault (never a crash, a
// huge allocation or a silent acceptance).
TEST(ProtocolTest, HostileBodiesAreRejectedWithTheirFault) {
  const std::string ok_input = R"({"name":"x","datatype":"FP32","shape":[1],"data":[1]})";
  struct Case {
    std::string body;
    std::optional<std::size_t> json_length;
    const char* message;
  };
  const std::string bin_head = R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}}]})";
  const std::string bin7 = R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":7}}]})";
  const std::vector<Case> cases = {
      {"{not json", std::nullopt, "not valid JSON"},
      {"[1,2]", std::nullopt, "must be a JSON object"},
      {R"({"inputs":[]})", std::nullopt, "non-empty array"},
      {R"({"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]})", std::nullopt, "\"name\" is missing"},
      {R"({"inputs":[{"name":"x","datatype":"FP64","shape":[1],"data":[1]}]})", std::nullopt, "FP64\" is not supported"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[-1],"data":[1]}]})", std::nullopt, "negative dimension"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[4294967296,4294967296],"data":[1]}]})", std::nullopt, "more than"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1]}]})", std::nullopt, "data has 1 elements, the shape 2"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1,2]}]})", std::nullopt, "more than the shape's 1"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":["a"]}]})", std::nullopt, "not a number"},
      {R"({"inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[3000000000]}]})", std::nullopt, "does not fit INT32"},
      {R"({"inputs":[{"name":"x","datatype":"INT64","shape":[1],"data":[1.5]}]})", std::nullopt, "not an integer"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":)" + std::string(70, '[') + "1" +
           std::string(70, ']') + "}]}",
       std::nullopt, "deeper than 64"},
      {R"({"inputs":[)" + ok_input + "," + ok_input + "]}", std::nullopt, "given twice"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]})", std::nullopt, "has no \"data\""},
      {R"({"inputs":[)" + ok_input + R"(],"parameters":{"timeout":"soon"}})", std::nullopt, "must be an integer"},
      {bin_head, std::nullopt, "without an Inference-Header-Content-Length"},
      {bin_head + "1234", bin_head.size(), "ends after 4 of its 8 bytes"},
      {bin_head + "123456789", bin_head.size(), "1 bytes of binary data follow"},
      {bin_head, bin_head.size() + 10, "but the body has only"},
      {bin7 + "1234567", bin7.size(), "binary_data_size is 7"},
      {R"({"inputs":[)" + ok_input + R"(],"outputs":[{"parameters":{}}]})", std::nullopt, "\"name\" is missing"},
  };
  for (const Case& c : cases) {
    try {
      parse_infer_request(c.body, c.json_length);
      ADD_FAILURE() << "accepted: " << c.body.substr(0, 120);
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << e.what() << "\n  wanted: " << c.message;
    }
  }
}

// The fuzz target's property (tests/fuzz/infer_request_fuzz.cc) on every build: 20,000 random
// mutations of valid bodies (bytes flipped, inserted, removed, truncated; the binary header
// length moved) give a request or an InvalidArgument, nothing else (ASan watches in the asan preset).
TEST(ProtocolTest, MutatedBodiesGiveARequestOrInvalidArgument) {
  const std::string bin_head =
      R"({"inputs":[{"name":"x","datatype":"FP16","shape":[2],"parameters":{"binary_data_size":4}},)"
      R"({"name":"ids","datatype":"INT64","shape":[1,1],"data":[[7]]}],"outputs":[{"name":"y"}]})";
  const std::vector<std::pair<std::string, std::optional<std::size_t>>> seeds = {
      {R"({"id":"a","inputs":[{"name":"input","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4]]}],)"
       R"("parameters":{"timeout":100,"binary_data_output":true}})", std::nullopt},
      {bin_head + std::string("\x00\x3c\x00\x40", 4), bin_head.size()},
      {R"({"inputs":[{"name":"m","datatype":"BOOL","shape":[3],"data":[true,false,true]},)"
       R"({"name":"u","datatype":"UINT8","shape":[1],"data":[255]}]})", std::nullopt},
  };
  std::mt19937_64 g(12345);
  int parsed = 0, rejected = 0;
  const char alphabet[] = "{}[],:\"0123456789-.eE truefalsnul\\/\x00\xff";
  for (int iter = 0; iter < 20000; ++iter) {
    auto [body, jl] = seeds[g() % seeds.size()];
    const int edits = 1 + static_cast<int>(g() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const std::size_t at = g() % body.size();
      switch (g() % 5) {
        case 0: body[at] = static_cast<char>(g()); break;
        case 1: body[at] = alphabet[g() % (sizeof alphabet - 1)]; break;
        case 2: body.insert(at, 1, alphabet[g() % (sizeof alphabet - 1)]); break;
        case 3: body.erase(at, 1 + g() % 8); break;
        case 4: body.resize(at); break;
      }
    }
    if (jl && g() % 4 == 0) jl = g() % (body.size() + 3);
    try {
      auto r = parse_infer_request(body, jl);
      std::size_t bytes = 0;
      for (const auto& in : r.inputs) {
        std::size_t n = dtype_size(in.dtype);
        for (auto d : in.shape) n *= static_cast<std::size_t>(d);
        EXPECT_EQ(in.data.size(), n) << "an input's bytes match its shape and datatype";
        bytes += in.data.size();
      }
      EXPECT_LE(bytes, body.size() * 8) << "no tensor larger than the body could describe";
      ++parsed;
    } catch (const InvalidArgument&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rejected, 1000);
}

TEST(ProtocolTest, ResponseJsonAndBinaryRoundTrip) {
  server::InferResponse r;
  r.model_name = "m";
  r.model_version = "1";
  r.id = "q";
  float v[3] = {0.1f, -2.5f, 3e-8f};
  r.outputs.push_back({"y", DType::float32, {3}, std::string(reinterpret_cast<char*>(v), sizeof v), false});
  r.outputs.push_back({"z", DType::float32, {3}, std::string(reinterpret_cast<char*>(v), sizeof v), true});
  std::optional<std::size_t> jl;
  const std::string body = server::write_infer_response(r, &jl);
  ASSERT_TRUE(jl.has_value());
  json j = json::parse(body.substr(0, *jl));
  EXPECT_EQ(j["id"], "q");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(j["outputs"][0]["data"][i].get<float>(), v[i]) << "JSON floats read back exactly";
  EXPECT_EQ(j["outputs"][1]["parameters"]["binary_data_size"], 12);
  EXPECT_EQ(body.substr(*jl), std::string(reinterpret_cast<char*>(v), sizeof v));
}

// ---------------------------------------------------------------- the HTTP server

// The example repository's modules loaded directly: what every response must equal.
struct Direct {
  std::shared_ptr<nn::Module> mlp, bert;
  Direct() {
    mlp = nn::make_module("mlp", R"({"sizes": [32, 128, 16], "activation": "gelu"})");
    mlp->load_safetensors(kRepo + "/mlp/model.safetensors", kCpu);
    bert = nn::make_module("bert", R"({"vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64})");
    bert->load_safetensors(kRepo + "/bert-tiny/model.safetensors", kCpu);
  }
  std::vector<float> mlp_out(const std::vector<float>& x) const {
    const auto rows = static_cast<std::int64_t>(x.size() / 32);
    return mlp->forward(nn::Input(from_vector(x, {rows, 32}, kCpu))).y.to_float_vector();
  }
};
const Direct& direct() {
  static const Direct d;
  return d;
}

std::string json_infer(const std::vector<float>& x, const std::string& id) {
  json j{{"id", id}, {"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", {x.size() / 32, 32}}, {"data", x}}}}};
  return j.dump();
}

// "0,0,...,0": n zeros for a JSON data array.
std::string zeros_text(int n) {
  std::string s = "0";
  for (int i = 1; i < n; ++i) s += ",0";
  return s;
}

std::vector<float> json_floats(const json& data) {
  std::vector<float> v;
  for (const auto& x : data) v.push_back(x.get<float>());
  return v;
}

// `clients` threads, each with its own keep-alive connection, send `per` requests each; `one`
// sends request i of client c and says whether its response was right. Every response must be.
void run_clients(unsigned short port, int clients, int per, const std::function<bool(HttpClient&, int, int)>& one) {
  std::atomic<int> ok{0}, wrong{0}, failed{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < clients; ++c) {
    ts.emplace_back([&, c] {
      try {
        HttpClient client(port, 120000);
        for (int i = 0; i < per; ++i) ++(one(client, c, i) ? ok : wrong);
      } catch (const std::exception&) {
        ++failed;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(ok.load(), clients * per);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(server::HttpOptions o = {}) {
    core_ = std::make_unique<server::InferenceServer>(kRepo, server::ServerOptions{});
    o.address = "127.0.0.1";
    o.port = 0;
    http_ = std::make_unique<server::HttpServer>(*core_, o);
  }
  void TearDown() override {
    http_.reset();
    core_.reset();
  }
  unsigned short port() const { return http_->port(); }
  std::unique_ptr<server::InferenceServer> core_;
  std::unique_ptr<server::HttpServer> http_;
};

TEST_F(HttpServerTest, EveryEndpoint) {
  start();
  HttpClient c(port());
  EXPECT_EQ(c.request("GET", "/v2/health/live").status, 200);
  EXPECT_EQ(c.request("GET", "/v2/health/ready").status, 200);
  json meta = json::parse(c.request("GET", "/v2").body);
  EXPECT_EQ(meta["name"], "streampool");
  EXPECT_NE(meta["extensions"].dump().find("binary_tensor_data"), std::string::npos);
  json mm = json::parse(c.request("GET", "/v2/models/mlp").body);
  EXPECT_EQ(mm["inputs"][0]["name"], "input");
  EXPECT_EQ(mm["inputs"][0]["datatype"], "FP32");
  EXPECT_EQ(mm["inputs"][0]["shape"], json::parse("[-1, 32]"));
  EXPECT_EQ(mm["outputs"][0]["shape"], json::parse("[-1, 16]"));
  json bm = json::parse(c.request("GET", "/v2/models/bert-tiny/versions/1").body);
  EXPECT_EQ(bm["inputs"][0]["name"], "input_ids");
  EXPECT_EQ(bm["outputs"][1]["name"], "pooler_output");
  EXPECT_EQ(bm["outputs"][1]["shape"], json::parse("[-1, 32]"));
  json em = json::parse(c.request("GET", "/v2/models/encoder").body);
  EXPECT_EQ(em["inputs"][0]["shape"], json::parse("[-1, -1, 32]"));
  EXPECT_EQ(c.request("GET", "/v2/models/mlp/ready").status, 200);
  EXPECT_EQ(c.request("GET", "/v2/models/mlp/versions/1/ready").status, 200);
  EXPECT_EQ(c.request("GET", "/v2/models/mlp/versions/7").status, 404);
  HttpResponse nf = c.request("GET", "/v2/models/nope");
  EXPECT_EQ(nf.status, 404);
  EXPECT_NE(nf.body.find("no model named 'nope'"), std::string::npos);
  EXPECT_EQ(c.request("GET", "/v2/models/mlp/infer").status, 405);
  EXPECT_EQ(c.request("GET", "/v3/anything").status, 404);
  const auto x = input_for(1, 64);
  EXPECT_EQ(c.request("POST", "/v2/models/mlp/infer", json_infer(x, "m1")).status, 200);
  const std::string metrics = c.request("GET", "/metrics").body;
  EXPECT_NE(metrics.find("streampool_inference_request_success_total{model=\"mlp\",version=\"1\"} 1"), std::string::npos) << metrics;
  std::size_t types = 0;
  for (std::size_t p = 0; (p = metrics.find("# TYPE streampool_request_duration_us ", p)) != std::string::npos; ++p) ++types;
  EXPECT_EQ(types, 1u) << "one TYPE line per metric family over all models";
  EXPECT_NE(metrics.find("streampool_request_duration_us_bucket{queue=\"mlp\""), std::string::npos);
  core_->set_ready(false);
  EXPECT_EQ(c.request("GET", "/v2/health/ready").status, 503);
  EXPECT_EQ(c.request("GET", "/v2/models/mlp/ready").status, 503);
}

TEST_F(HttpServerTest, InferJsonEqualsTheModuleAndEchoesTheId) {
  start();
  HttpClient c(port());
  const auto x = input_for(7, 3 * 32);
  HttpResponse r = c.request("POST", "/v2/models/mlp/infer", json_infer(x, "req-7"));
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["id"], "req-7");
  EXPECT_EQ(j["model_name"], "mlp");
  EXPECT_EQ(j["outputs"][0]["shape"], json::parse("[3, 16]"));
  EXPECT_LE(max_diff(json_floats(j["outputs"][0]["data"]), direct().mlp_out(x)), kTol);
}

// "Expect: 100-continue" (curl, for bodies over 1 KB) gets its 100 Continue before the body.
TEST_F(HttpServerTest, ExpectContinueGetsA100BeforeTheBody) {
  start();
  HttpClient c(port(), 3000);
  const auto x = input_for(9, 32);
  const std::string body = json_infer(x, "e");
  ASSERT_TRUE(c.send_raw("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n"));
  auto cont = c.read_response();
  ASSERT_TRUE(cont.has_value()) << "no 100 Continue within 3 s";
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(c.send_raw(body));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_LE(max_diff(json_floats(json::parse(r->body)["outputs"][0]["data"]), direct().mlp_out(x)), kTol);
}

// A deadline, from the "timeout" parameter or the Inference-Timeout header (microseconds; the
// nearer one holds), reaches the queue: in a repository whose mlp waits 400 ms for company, a
// lone request with a 20 ms deadline gets 504 and is not run; one without a deadline gets 200.
TEST(HttpServerDeadline, ParameterAndHeaderReachTheQueue) {
  namespace fs = std::filesystem;
  const fs::path repo = fs::temp_directory_path() / ("streampool-deadline-" + std::to_string(::getpid()));
  fs::remove_all(repo);
  fs::create_directories(repo / "mlp");
  fs::copy_file(kRepo + "/mlp/model.safetensors", repo / "mlp" / "model.safetensors");
  std::ofstream(repo / "mlp" / "config.json") << R"({"module": "mlp", "config": {"sizes": [32, 128, 16], "activation": "gelu"},
      "weights": "model.safetensors", "max_batch_size": 64, "max_delay_us": 400000, "workers": 1})";
  {
    server::InferenceServer core(repo.string(), server::ServerOptions{});
    server::HttpOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    server::HttpServer http(core, o);
    HttpClient c(http.port(), 10000);
    const auto x = input_for(31, 32);
    json with_param = json::parse(json_infer(x, "p"));
    with_param["parameters"]["timeout"] = 20000;
    HttpResponse r = c.request("POST", "/v2/models/mlp/infer", with_param.dump());
    EXPECT_EQ(r.status, 504) << r.body;
    r = c.request("POST", "/v2/models/mlp/infer", json_infer(x, "h"), "Inference-Timeout: 20000\r\n");
    EXPECT_EQ(r.status, 504) << "the header's deadline: " << r.body;
    with_param["parameters"]["timeout"] = 60000000;
    r = c.request("POST", "/v2/models/mlp/infer", with_param.dump(), "Inference-Timeout: 20000\r\n");
    EXPECT_EQ(r.status, 504) << "the nearer of the two: " << r.body;
    r = c.request("POST", "/v2/models/mlp/infer", json_infer(x, "none"), "Inference-Timeout: 0\r\n");
    ASSERT_EQ(r.status, 200) << "0 is no deadline: " << r.body;
    EXPECT_LE(max_diff(json_floats(json::parse(r.body)["outputs"][0]["data"]), direct().mlp_out(x)), kTol);
    // The longest deadline there is waits as long as it takes; it does not wrap into the past.
    with_param["parameters"]["timeout"] = std::numeric_limits<std::int64_t>::max();
    r = c.request("POST", "/v2/models/mlp/infer", with_param.dump(), "Inference-Timeout: 9223372036854775807\r\n");
    EXPECT_EQ(r.status, 200) << "INT64_MAX microseconds: " << r.body;
    r = c.request("POST", "/v2/models/mlp/infer", json_infer(x, "bad"), "Inference-Timeout: soon\r\n");
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("Inference-Timeout is not a timeout in microseconds"), std::string::npos) << r.body;
  }
  fs::remove_all(repo);
}

TEST_F(HttpServerTest, InferBinaryInAndOut) {
  start();
  HttpClient c(port());
  const auto x = input_for(8, 2 * 32);
  json head{{"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", {2, 32}}, {"parameters", {{"binary_data_size", 256}}}}}},
            {"outputs", {{{"name", "output"}, {"parameters", {{"binary_data", true}}}}}}};
  const std::string h = head.dump();
  HttpResponse r = c.request("POST", "/v2/models/mlp/infer", h + std::string(reinterpret_cast<const char*>(x.data()), 256),
                             "Inference-Header-Content-Length: " + std::to_string(h.size()) + "\r\n");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::size_t jl = std::stoul(r.header("inference-header-content-length"));
  json j = json::parse(r.body.substr(0, jl));
  ASSERT_EQ(j["outputs"][0]["parameters"]["binary_data_size"], 2 * 16 * 4);
  std::vector<float> y(32);
  ASSERT_EQ(r.body.size() - jl, y.size() * 4);
  std::memcpy(y.data(), r.body.data() + jl, y.size() * 4);
  EXPECT_LE(max_diff(y, direct().mlp_out(x)), kTol);
}

TEST_F(HttpServerTest, BertWithAttentionMaskEqualsTheModule) {
  start();
  HttpClient c(port());
  std::vector<std::int64_t> ids = {5, 17, 300, 2, 9, 44, 8, 100, 0, 0}, mask = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  json req{{"inputs", {{{"name", "input_ids"}, {"datatype", "INT64"}, {"shape", {2, 5}}, {"data", ids}},
                       {{"name", "attention_mask"}, {"datatype", "INT64"}, {"shape", {2, 5}}, {"data", mask}}}},
           {"outputs", {{{"name", "pooler_output"}}}}};
  HttpResponse r = c.request("POST", "/v2/models/bert-tiny/infer", req.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  ASSERT_EQ(j["outputs"].size(), 1u);
  EXPECT_EQ(j["outputs"][0]["name"], "pooler_output");
  nn::Input in(from_vector(ids, {2, 5}, kCpu));
  in.attention_mask = from_vector(mask, {2, 5}, kCpu);
  const auto want = direct().bert->forward(in).pooled.to_float_vector();
  EXPECT_LE(max_diff(json_floats(j["outputs"][0]["data"]), want), kTol);
}

// Sequences of different lengths from many connections share padded batches; each response
// holds its own request's positions only (a strided view of the batch output, read back on the
// I/O thread: Note [Server hand-offs]), equal to the module run on that request alone.
TEST_F(HttpServerTest, MixedLengthsFromManyClientsEachGetTheirOwnPositions) {
  start();
  const int clients = 16, per = 12;
  run_clients(port(), clients, per, [](HttpClient& client, int c, int i) {
    // Two rows in every other request: rows of a padded batch are then strided.
    const int len = 3 + (c * 7 + i * 5) % 38, rows = 1 + i % 2;
    std::mt19937_64 g(static_cast<std::uint64_t>(c) * 1000 + static_cast<std::uint64_t>(i));
    std::vector<std::int64_t> ids(static_cast<std::size_t>(rows * len));
    for (auto& id : ids) id = static_cast<std::int64_t>(1 + g() % 500);
    json req{{"inputs", {{{"name", "input_ids"}, {"datatype", "INT64"}, {"shape", {rows, len}}, {"data", ids}}}}};
    HttpResponse r = client.request("POST", "/v2/models/bert-tiny/infer", req.dump());
    if (r.status != 200) return false;
    const nn::Output want = direct().bert->forward(nn::Input(from_vector(ids, {rows, len}, kCpu)));
    json j = json::parse(r.body);
    return j["outputs"][0]["shape"] == json::array({rows, len, 32}) &&
           max_diff(json_floats(j["outputs"][0]["data"]), want.y.to_float_vector()) <= kTol &&
           max_diff(json_floats(j["outputs"][1]["data"]), want.pooled.to_float_vector()) <= kTol;
  });
  const auto m = core_->model("bert-tiny").queue->metrics();
  EXPECT_LT(m.batches, static_cast<std::uint64_t>(clients * per)) << "requests of different lengths share batches";
}

// Hostile requests get an error response naming the fault; the server goes on serving.
TEST_F(HttpServerTest, HostileRequestsGetErrorsAndTheServerGoesOn) {
  server::HttpOptions o;
  o.max_request_bytes = 64 * 1024;
  start(o);
  const std::string bin_head = R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,32],"parameters":{"binary_data_size":128}}]})";
  const auto good = json_infer(input_for(3, 32), "good");
  struct Case {
    std::string body, headers;
    int status;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"{oops", "", 400, "not valid JSON"},
      {R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,31],"data":[)" + zeros_text(31) + "]}]}", "", 400,
       "has shape [1, 31], the model takes [-1, 32]"},
      {R"({"inputs":[{"name":"input","datatype":"FP16","shape":[1,32],"data":[)" + zeros_text(32) + "]}]}", "", 400,
       "is FP16, the model takes FP32"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,32],"data":[)" + zeros_text(32) + "]}]}", "", 400,
       "has no input 'x'"},
      {R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,32],"data":[)" + zeros_text(32) +
           R"(]}],"outputs":[{"name":"logits"}]})",
       "", 400, "has no output 'logits'"},
      {bin_head + "short", "Inference-Header-Content-Length: " + std::to_string(bin_head.size()) + "\r\n", 400,
       "ends after 5 of its 128 bytes"},
      {good, "Inference-Header-Content-Length: twelve\r\n", 400, "not a byte count"},
      {std::string(70 * 1024, ' '), "", 413, "larger than the server's limit"},
  };
  for (const Case& c : cases) {
    HttpClient client(port());
    HttpResponse r = client.request("POST", "/v2/models/mlp/infer", c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << r.body;
    EXPECT_NE(r.body.find(c.message), std::string::npos) << r.body << "\n  wanted: " << c.message;
    if (r.status != 413) EXPECT_EQ(client.request("POST", "/v2/models/mlp/infer", good).status, 200) << "same connection goes on";
  }
  {
    HttpClient client(port());
    ASSERT_TRUE(client.send_raw("HELLO WORLD\r\n\r\n"));
    auto r = client.read_response();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("malformed HTTP"), std::string::npos);
  }
  HttpClient after(port());
  EXPECT_EQ(after.request("POST", "/v2/models/mlp/infer", good).status, 200);
  const std::string metrics = after.request("GET", "/metrics").body;
  EXPECT_NE(metrics.find("streampool_inference_request_failure_total{model=\"mlp\",version=\"1\"} 7"), std::string::npos)
      << "each rejected infer request is counted\n" << metrics;
}

// A client that starts a request and stalls (slow loris, half-open) is dropped after the timeout;
// the others are served meanwhile.
TEST_F(HttpServerTest, SlowClientIsDroppedAfterTheTimeout) {
  server::HttpOptions o;
  o.timeout = std::chrono::milliseconds(300);
  start(o);
  HttpClient slow(port(), 3000);
  ASSERT_TRUE(slow.send_raw("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp"));
  HttpClient other(port());
  EXPECT_EQ(other.request("POST", "/v2/models/mlp/infer", json_infer(input_for(4, 32), "o")).status, 200);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(slow.closed_by_server());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2500));
}

TEST_F(HttpServerTest, ConnectionsPastTheBoundGet503) {
  server::HttpOptions o;
  o.max_connections = 3;
  start(o);
  std::vector<std::unique_ptr<HttpClient>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<HttpClient>(port()));
    EXPECT_EQ(held.back()->request("GET", "/v2/health/live").status, 200);
  }
  HttpClient extra(port());
  auto r = extra.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("too many connections"), std::string::npos);
  held.pop_back();
  for (int tries = 0;; ++tries) {  // the server sees the close asynchronously
    HttpClient again(port());
    if (again.request("GET", "/v2/health/live").status == 200) break;
    ASSERT_LT(tries, 100);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

// 256 keep-alive clients x 200 requests at once, each request its own input (1 to 3 rows),
// checked against its own expected output and its own id: nothing lost, duplicated or swapped.
TEST_F(HttpServerTest, ManyKeepAliveClientsEachGetTheirOwnResults) {
  start();
  const int clients = 256, per = env_int("STREAMPOOL_SERVER_TEST_REQUESTS", 200);
  run_clients(port(), clients, per, [](HttpClient& client, int c, int i) {
    const auto seed = static_cast<std::uint64_t>(c) * 100000 + static_cast<std::uint64_t>(i);
    const auto x = input_for(seed, static_cast<std::size_t>(32 * (1 + i % 3)));
    const std::string id = std::to_string(c) + "-" + std::to_string(i);
    HttpResponse r = client.request("POST", "/v2/models/mlp/infer", json_infer(x, id));
    json j = json::parse(r.body);
    return r.status == 200 && j["id"] == id && max_diff(json_floats(j["outputs"][0]["data"]), direct().mlp_out(x)) <= kTol;
  });
  const auto m = core_->model("mlp").queue->metrics();
  EXPECT_LT(m.batches, static_cast<std::uint64_t>(clients * per)) << "requests from many connections share batches";
}

#ifdef STREAMPOOL_CLI_PATH
// SIGTERM under load: `streampool serve` stops accepting, answers every request it received,
// and exits 0; every response a client got is right, and the server's count of answered
// requests equals the clients' count of responses.
TEST(ServeCommandTest, SigtermUnderLoadAnswersEveryReceivedRequest) {
  int out_pipe[2], err_pipe[2];
  ASSERT_EQ(pipe(out_pipe), 0);
  ASSERT_EQ(pipe(err_pipe), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    execl(STREAMPOOL_CLI_PATH, STREAMPOOL_CLI_PATH, "serve", "--model-repository", kRepo.c_str(), "--http-port", "0",
          "--address", "127.0.0.1", "--grpc-port", "-1", "--threads", "2", "--drain-timeout-s", "10", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  FILE* out = fdopen(out_pipe[0], "r");
  char line[512] = {0};
  ASSERT_NE(fgets(line, sizeof line, out), nullptr) << "serve printed nothing";
  const char* colon = std::strrchr(line, ':');
  ASSERT_NE(colon, nullptr) << line;
  const auto port = static_cast<unsigned short>(std::atoi(colon + 1));
  std::atomic<int> answered{0}, wrong{0};
  std::atomic<bool> signalled{false}, early_failure{false};
  std::vector<std::thread> ts;
  for (int c = 0; c < 16; ++c) {
    ts.emplace_back([&, c] {
      for (int i = 0;; ++i) {
        std::unique_ptr<HttpClient> client;
        try {
          client = std::make_unique<HttpClient>(port);
        } catch (const std::exception&) {
          if (!signalled) early_failure = true;
          return;  // refused: the server stopped accepting
        }
        for (;; ++i) {
          const auto x = input_for(static_cast<std::uint64_t>(c) * 1000000 + static_cast<std::uint64_t>(i), 32);
          const std::string body = json_infer(x, std::to_string(i));
          std::string req = "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
          if (!client->send_raw(req)) break;
          auto r = client->read_response();
          if (!r) break;  // closed without a response: the server never read this request
          ++answered;
          json j = json::parse(r->body);
          if (r->status != 200 || max_diff(json_floats(j["outputs"][0]["data"]), direct().mlp_out(x)) > kTol) ++wrong;
          if (r->header("connection") == "close") break;
        }
        if (!signalled) early_failure = true;
        if (signalled) return;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int before = answered.load();
  signalled = true;
  kill(pid, SIGTERM);
  for (auto& t : ts) t.join();
  int status = 0;
  waitpid(pid, &status, 0);
  std::string err;
  char buf[4096];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<std::size_t>(n));
  fclose(out);
  close(err_pipe[0]);
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  EXPECT_GT(before, 0) << "load ran before the signal";
  EXPECT_FALSE(early_failure.load()) << "a connection failed before SIGTERM";
  EXPECT_EQ(wrong.load(), 0);
  unsigned long long conns = 0, received = 0, done = 0;
  const char* s = std::strstr(err.c_str(), "connections, ");
  ASSERT_NE(s, nullptr) << err;
  while (s > err.c_str() && s[-1] != '\n') --s;
  ASSERT_EQ(std::sscanf(s, "streampool serve: %llu connections, %llu requests received, %llu answered", &conns, &received, &done), 3) << err;
  EXPECT_EQ(received, done) << "every received request was answered";
  EXPECT_EQ(done, static_cast<unsigned long long>(answered.load())) << "every answer reached its client";
}
#endif

}  // namespace
}  // namespace streampool
