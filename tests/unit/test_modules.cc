// Module loading: every mismatch reported at once, nothing changed on failure; modules shared
// by threads; safetensors loading.

#include <gtest/gtest.h>

#include <thread>

#include "streampool/streampool.h"
#include "support/work.h"

using namespace streampool;

namespace {

class ModulesTest : public test::DeviceTest {};

nn::StateDict mlp_state() {
  const Device cpu(DeviceKind::cpu);
  return {{"0.weight", randn({8, 4}, DType::float32, cpu, 1)}, {"0.bias", randn({8}, DType::float32, cpu, 2)},
          {"2.weight", randn({2, 8}, DType::float32, cpu, 3)}, {"2.bias", randn({2}, DType::float32, cpu, 4)}};
}

}  // namespace

TEST_P(ModulesTest, LoadStateDictListsEveryProblemAtOnce) {
  auto mlp = nn::make_mlp({4, 8, 2}, Activation::relu);
  auto names = mlp->parameters();
  ASSERT_EQ(names.size(), 4u);
  EXPECT_EQ(names[0].first, "0.weight");
  EXPECT_EQ(names[0].second, (Shape{8, 4}));
  nn::StateDict bad = mlp_state();
  bad.erase("2.bias");                                                       // missing
  bad["0.weight"] = randn({4, 8}, DType::float32, Device(DeviceKind::cpu), 5);  // wrong shape
  bad["3.weight"] = randn({1}, DType::float32, Device(DeviceKind::cpu), 6);     // unexpected
  try {
    mlp->load_state_dict(bad, device);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("missing (1): 2.bias"), std::string::npos) << m;
    EXPECT_NE(m.find("0.weight is (4, 8), expected (8, 4)"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected (1): 3.weight"), std::string::npos) << m;
  }
  EXPECT_FALSE(mlp->loaded());
  EXPECT_THROW((*mlp)(zeros({1, 4}, DType::float32, device)), InvalidArgument) << "unloaded module refuses";
  mlp->load_state_dict(mlp_state(), device);
  EXPECT_TRUE(mlp->loaded());
  EXPECT_EQ((*mlp)(zeros({3, 4}, DType::float32, device)).y.shape(), (Shape{3, 2}));
  EXPECT_THROW((*mlp)(zeros({3, 5}, DType::float32, device)), InvalidArgument);
}

TEST_P(ModulesTest, SharedModuleGivesEveryThreadTheSameResult) {
  auto mlp = nn::make_mlp({4, 8, 2}, Activation::gelu);
  mlp->load_state_dict(mlp_state(), device);
  Tensor x = randn({5, 4}, DType::float32, device, 9);
  std::vector<float> ref = (*mlp)(x).y.to_vector<float>();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      Tensor mine = x.clone();
      for (int i = 0; i < 50; ++i) wrong += (*mlp)(mine).y.to_vector<float>() != ref;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
}

TEST_P(ModulesTest, LoadFromSafetensorsInHalfPrecision) {
  const std::string golden = test::source_dir() + "/tests/data/golden/layernorm_512.safetensors";
  auto ln = std::make_unique<nn::LayerNorm>(512);
  // The golden file also holds the case's input and output: strict loading names them.
  try {
    ln->load_safetensors(golden, device);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected (2): input, output"), std::string::npos) << e.what();
  }
  SafetensorsFile f = SafetensorsFile::open(golden);
  const std::string params = testing::TempDir() + "ln_params_" + GetParam() + ".safetensors";
  save_safetensors(params, {{"weight", f.load("weight", device)}, {"bias", f.load("bias", device)}});
  ln->load_safetensors(params, device, DType::float16);
  EXPECT_EQ(ln->weight().dtype(), DType::float16);
  EXPECT_EQ(ln->weight().device(), device);
  auto wrong = std::make_unique<nn::LayerNorm>(256);
  EXPECT_THROW(wrong->load_safetensors(params, device), InvalidArgument);
}

TEST_P(ModulesTest, LoadedParametersAreReadOnly) {
  auto mlp = nn::make_mlp({4, 8, 2}, Activation::relu);
  mlp->load_state_dict(mlp_state(), device);
  Tensor x = randn({3, 4}, DType::float32, device, 11);
  const std::vector<float> before = (*mlp)(x).y.to_vector<float>();
  nn::StateDict other = mlp_state();
  other["0.bias"] = full({8}, 5.0, DType::float32, Device(DeviceKind::cpu));
  try {
    mlp->load_state_dict(other, device);
    FAIL() << "a second load must be refused";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("already loaded"), std::string::npos) << e.what();
  }
  EXPECT_EQ((*mlp)(x).y.to_vector<float>(), before) << "the weights changed under other threads' feet";
}

TEST_P(ModulesTest, InputFieldsAModuleDoesNotTakeAreRefused) {
  auto mlp = nn::make_mlp({4, 8, 2}, Activation::relu);
  mlp->load_state_dict(mlp_state(), device);
  nn::Input in(randn({2, 4}, DType::float32, device, 12));
  in.key_padding_mask = zeros({2, 4}, DType::boolean, device);
  try {
    (*mlp)(in);
    FAIL() << "a mask given to an MLP must not be ignored silently";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("Sequential takes no key_padding_mask"), std::string::npos) << e.what();
  }
  EXPECT_THROW((*mlp)(nn::Input()), InvalidArgument) << "an undefined input";
}

TEST_P(ModulesTest, RegistryBuildsWhatTheConstructorsBuild) {
  auto direct = nn::make_mlp({4, 8, 2}, Activation::relu);
  auto built = nn::make_module("mlp", R"({"sizes": [4, 8, 2], "activation": "relu"})");
  EXPECT_EQ(built->parameters(), direct->parameters());
  direct->load_state_dict(mlp_state(), device);
  built->load_state_dict(mlp_state(), device);
  Tensor x = randn({3, 4}, DType::float32, device, 13);
  EXPECT_EQ((*built)(x).y.to_vector<float>(), (*direct)(x).y.to_vector<float>());
  auto seq = nn::make_module("sequential", R"({"layers": [{"kind": "linear", "in_features": 4, "out_features": 8},
      {"kind": "relu"}, {"kind": "linear", "in_features": 8, "out_features": 2}]})");
  EXPECT_EQ(seq->parameters(), direct->parameters());
}

INSTANTIATE_TEST_SUITE_P(Devices, ModulesTest, STREAMPOOL_DEVICES, test::param_name);

// The registry is the same on every device: its errors need no device (the _cpu suffix puts it
// in the CPU suite).
TEST(ModuleRegistry, UnknownKindsFieldsAndTypesAreRefusedByName_cpu) {
  auto refused = [](const char* kind, const char* config, const char* expect) {
    try {
      nn::make_module(kind, config);
      ADD_FAILURE() << kind << " " << config << " was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  refused("lstm", "{}", "unknown kind 'lstm'");
  refused("linear", R"({"in_features": 4})", "'out_features' is missing");
  refused("linear", R"({"in_features": 4, "out_features": 2, "biass": false})", "unknown field 'biass'");
  refused("linear", R"({"in_features": "four", "out_features": 2})", "'in_features' has the wrong type");
  refused("linear", R"({"in_features": -4, "out_features": 2})", "'in_features' must be positive");
  refused("linear", "[1, 2]", "must be a JSON object");
  refused("linear", "{not json", "not valid JSON");
  refused("sequential", R"({"layers": [{"kind": "relu"}, {"in_features": 2}]})", "each layer must be an object with a");
  refused("transformer_encoder_layer", R"({"d_model": 8, "nhead": 2, "dropout": 0.1})", "'dropout' must be 0");
  refused("mlp", R"({"sizes": [4, 2], "activation": "softplus"})", "unknown activation 'softplus'");
  EXPECT_EQ(nn::module_kinds().size(), 12u);
}
