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
  EXPECT_THROW(mlp->forward(zeros({1, 4}, DType::float32, device)), InvalidArgument) << "unloaded module refuses";
  mlp->load_state_dict(mlp_state(), device);
  EXPECT_TRUE(mlp->loaded());
  EXPECT_EQ(mlp->forward(zeros({3, 4}, DType::float32, device)).shape(), (Shape{3, 2}));
  EXPECT_THROW(mlp->forward(zeros({3, 5}, DType::float32, device)), InvalidArgument);
}

TEST_P(ModulesTest, SharedModuleGivesEveryThreadTheSameResult) {
  auto mlp = nn::make_mlp({4, 8, 2}, Activation::gelu);
  mlp->load_state_dict(mlp_state(), device);
  Tensor x = randn({5, 4}, DType::float32, device, 9);
  std::vector<float> ref = mlp->forward(x).to_vector<float>();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      Tensor mine = x.clone();
      for (int i = 0; i < 50; ++i) wrong += mlp->forward(mine).to_vector<float>() != ref;
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
  EXPECT_EQ(ln->weight.dtype(), DType::float16);
  EXPECT_EQ(ln->weight.device(), device);
  auto wrong = std::make_unique<nn::LayerNorm>(256);
  EXPECT_THROW(wrong->load_safetensors(params, device), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Devices, ModulesTest, STREAMPOOL_DEVICES, test::param_name);
