// `streampool serve` over gRPC (src/server/grpc_server.cc), with a client from the generated
// stub of open_inference.proto: every RPC, raw and typed tensor contents, errors and their status
// codes, client deadlines, and many concurrent calls each checked against its own expected output.
#ifdef STREAMPOOL_HAS_GRPC

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "open_inference.grpc.pb.h"
#include "server/grpc_server.h"
#include "server/server_test_support.h"
#include "server/inference_server.h"
#include "streampool/nn/registry.h"
#include "streampool/streampool.h"

namespace streampool {
namespace {

using namespace server_test;  // NOLINT: kRepo, kCpu, kTol, input_for, max_diff

std::vector<float> mlp_direct(const std::vector<float>& x) {
  static const std::shared_ptr<nn::Module> m = [] {
    std::shared_ptr<nn::Module> mod = nn::make_module("mlp", R"({"sizes": [32, 128, 16], "activation": "gelu"})");
    mod->load_safetensors(kRepo + "/mlp/model.safetensors", kCpu);
    return mod;
  }();
  const auto rows = static_cast<std::int64_t>(x.size() / 32);
  return m->forward(nn::Input(from_vector(x, {rows, 32}, kCpu))).y.to_float_vector();
}

class GrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core_ = std::make_unique<server::InferenceServer>(kRepo, server::ServerOptions{});
    server::GrpcOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.max_request_bytes = 1 << 20;
    grpc_ = std::make_unique<server::GrpcServer>(*core_, o);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_->port()), grpc::InsecureChannelCredentials());
    stub_ = inference::GRPCInferenceService::NewStub(channel_);
  }
  void TearDown() override {
    stub_.reset();
    channel_.reset();
    grpc_.reset();
    core_.reset();
  }
  inference::ModelInferRequest mlp_request(const std::vector<float>& x, bool raw) {
    inference::ModelInferRequest r;
    r.set_model_name("mlp");
    r.set_id("g1");
    auto* in = r.add_inputs();
    in->set_name("input");
    in->set_datatype("FP32");
    in->add_shape(static_cast<std::int64_t>(x.size() / 32));
    in->add_shape(32);
    if (raw) {
      r.add_raw_input_contents(std::string(reinterpret_cast<const char*>(x.data()), x.size() * 4));
    } else {
      for (float f : x) in->mutable_contents()->add_fp32_contents(f);
    }
    return r;
  }
  static std::vector<float> floats(const inference::ModelInferResponse& r, int i = 0) {
    const std::string& raw = r.raw_output_contents(i);
    std::vector<float> v(raw.size() / 4);
    std::memcpy(v.data(), raw.data(), raw.size());
    return v;
  }
  std::unique_ptr<server::InferenceServer> core_;
  std::unique_ptr<server::GrpcServer> grpc_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

TEST_F(GrpcTest, HealthAndMetadata) {
  {
    grpc::ClientContext c;
    inference::ServerLiveResponse r;
    ASSERT_TRUE(stub_->ServerLive(&c, {}, &r).ok());
    EXPECT_TRUE(r.live());
  }
  {
    grpc::ClientContext c;
    inference::ServerReadyResponse r;
    ASSERT_TRUE(stub_->ServerReady(&c, {}, &r).ok());
    EXPECT_TRUE(r.ready());
  }
  {
    grpc::ClientContext c;
    inference::ServerMetadataResponse r;
    ASSERT_TRUE(stub_->ServerMetadata(&c, {}, &r).ok());
    EXPECT_EQ(r.name(), "streampool");
  }
  {
    grpc::ClientContext c;
    inference::ModelMetadataRequest q;
    q.set_name("bert-tiny");
    inference::ModelMetadataResponse r;
    ASSERT_TRUE(stub_->ModelMetadata(&c, q, &r).ok());
    ASSERT_EQ(r.inputs_size(), 3);
    EXPECT_EQ(r.inputs(0).name(), "input_ids");
    EXPECT_EQ(r.inputs(0).datatype(), "INT64");
    ASSERT_EQ(r.outputs_size(), 2);
    EXPECT_EQ(r.outputs(1).name(), "pooler_output");
    EXPECT_EQ(r.outputs(1).shape(1), 32);
  }
  {
    grpc::ClientContext c;
    inference::ModelReadyRequest q;
    q.set_name("nope");
    inference::ModelReadyResponse r;
    const grpc::Status s = stub_->ModelReady(&c, q, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(s.error_message().find("no model named 'nope'"), std::string::npos);
  }
  core_->set_ready(false);
  grpc::ClientContext c;
  inference::ServerReadyResponse r;
  ASSERT_TRUE(stub_->ServerReady(&c, {}, &r).ok());
  EXPECT_FALSE(r.ready());
}

TEST_F(GrpcTest, InferRawAndTypedContentsEqualTheModule) {
  for (bool raw : {true, false}) {
    const auto x = input_for(raw ? 11 : 12, 2 * 32);
    grpc::ClientContext c;
    inference::ModelInferResponse r;
    const grpc::Status s = stub_->ModelInfer(&c, mlp_request(x, raw), &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.id(), "g1");
    ASSERT_EQ(r.outputs_size(), 1);
    EXPECT_EQ(r.outputs(0).name(), "output");
    EXPECT_EQ(r.outputs(0).shape(0), 2);
    EXPECT_EQ(r.outputs(0).shape(1), 16);
    EXPECT_LE(max_diff(floats(r), mlp_direct(x)), kTol) << (raw ? "raw" : "typed");
  }
}

TEST_F(GrpcTest, BadRequestsGetTheirStatusAndMessage) {
  auto expect = [&](inference::ModelInferRequest q, grpc::StatusCode code, const char* message) {
    grpc::ClientContext c;
    inference::ModelInferResponse r;
    const grpc::Status s = stub_->ModelInfer(&c, q, &r);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(message), std::string::npos) << s.error_message() << "\n  wanted: " << message;
  };
  const auto x = input_for(3, 32);
  auto q = mlp_request(x, true);
  q.mutable_inputs(0)->set_shape(1, 31);
  expect(q, grpc::StatusCode::INVALID_ARGUMENT, "shape and datatype make 124");
  q = mlp_request(input_for(3, 31), true);
  q.mutable_inputs(0)->set_shape(0, 1);
  q.mutable_inputs(0)->set_shape(1, 31);
  expect(q, grpc::StatusCode::INVALID_ARGUMENT, "has shape [1, 31], the model takes [-1, 32]");
  q = mlp_request(x, true);
  q.mutable_inputs(0)->set_datatype("FP64");
  expect(q, grpc::StatusCode::INVALID_ARGUMENT, "\"FP64\" is not supported");
  q = mlp_request(x, true);
  q.add_raw_input_contents("extra");
  expect(q, grpc::StatusCode::INVALID_ARGUMENT, "2 raw_input_contents for 1 inputs");
  q = mlp_request(x, true);
  q.set_model_name("nope");
  expect(q, grpc::StatusCode::NOT_FOUND, "no model named 'nope'");
  q = mlp_request(x, true);
  q.add_outputs()->set_name("logits");
  expect(q, grpc::StatusCode::INVALID_ARGUMENT, "has no output 'logits'");
  q = mlp_request(input_for(4, 32 * 9000), true);  // 1.1 MB over the 1 MiB limit
  expect(q, grpc::StatusCode::RESOURCE_EXHAUSTED, "");
  // The server goes on.
  grpc::ClientContext c;
  inference::ModelInferResponse r;
  EXPECT_TRUE(stub_->ModelInfer(&c, mlp_request(x, true), &r).ok());
}

// 64 threads x 50 calls at once, each its own input and expected output.
TEST_F(GrpcTest, ConcurrentCallsEachGetTheirOwnResults) {
  std::atomic<int> ok{0}, wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 64; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const auto x = input_for(static_cast<std::uint64_t>(t) * 1000 + static_cast<std::uint64_t>(i), 32 * (1 + i % 2));
        auto q = mlp_request(x, i % 3 != 0);
        q.set_id(std::to_string(t) + "-" + std::to_string(i));
        grpc::ClientContext c;
        inference::ModelInferResponse r;
        const grpc::Status s = stub_->ModelInfer(&c, q, &r);
        if (s.ok() && r.id() == q.id() && max_diff(floats(r), mlp_direct(x)) <= kTol) ++ok;
        else ++wrong;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(ok.load(), 64 * 50);
}

}  // namespace
}  // namespace streampool

#endif  // STREAMPOOL_HAS_GRPC
