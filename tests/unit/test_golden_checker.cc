// The golden checker itself (tools/golden_runner.h): each of its rules must be able to fail.
// Synthetic cases written to a temporary directory: a reference, our "output", and PyTorch's
// own error beside them.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "golden_runner.h"
#include "support/work.h"

using namespace streampool;

namespace {

class GoldenCheckerTest : public test::DeviceTest {
 protected:
  void SetUp() override {
    test::DeviceTest::SetUp();
    if (IsSkipped()) return;
    dir = std::filesystem::temp_directory_path() / ("streampool_golden_checker_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
  }
  void TearDown() override {
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  // Checks `got` against `ref` (both shaped `shape`) as output `output` of a case named "t";
  // `own` >= 0 writes PyTorch's own float32 error on the CPU for it; `mask` adds a key padding mask.
  golden::Result check(const std::string& output, const Shape& shape, const std::vector<float>& ref,
                       const std::vector<float>& got, double own = -1, const std::vector<std::uint8_t>& mask = {},
                       const Shape& mask_shape = {}, bool batch_first = true) {
    const Device cpu(DeviceKind::cpu);
    save_safetensors((dir / "t.safetensors").string(), {{output, from_vector(ref, shape, cpu)}});
    std::filesystem::remove(dir / "torch_error_cpu.json");  // none: the fixed tolerance
    if (own >= 0) {
      std::ofstream(dir / "torch_error_cpu.json")
          << R"({"cases": {"t": {")" << output << R"(": {"float32": {"max_abs": )" << own << "}}}}}";
    }
    golden::Case c;
    c.name = "t";
    c.file = "t.safetensors";
    c.kind = "multihead_attention";
    c.config = {{"batch_first", batch_first}};
    c.outputs = {output};
    std::map<std::string, Tensor> inputs;
    if (!mask.empty()) inputs["key_padding_mask"] = from_vector(mask, mask_shape, cpu);
    SafetensorsFile f = SafetensorsFile::open((dir / "t.safetensors").string());
    return golden::compare(c, f, inputs, {{output, from_vector(got, shape, cpu)}}, DType::float32, dir.string(), cpu);
  }
  std::filesystem::path dir;
};

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_P(GoldenCheckerTest, ErrorsAboveOneAndAHalfTimesPyTorchsOwnFail) {
  const std::vector<float> ref = {1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_TRUE(check("output", {4}, ref, {1.0f, 2.0f, 3.0014f, 4.0f}, 1e-3).pass);
  golden::Result r = check("output", {4}, ref, {1.0f, 2.0f, 3.0016f, 4.0f}, 1e-3);
  EXPECT_FALSE(r.pass);
  EXPECT_NE(r.detail.find("1.5x PyTorch's own"), std::string::npos) << r.detail;
  EXPECT_NEAR(r.ratio, 1.6, 0.01);
}

TEST_P(GoldenCheckerTest, WherePyTorchIsExactAFewUnitsInTheLastPlacePass) {
  const std::vector<float> ref = {0.5f, 1.0f};
  EXPECT_TRUE(check("output", {2}, ref, {0.5f, 1.0f + 4 * std::numeric_limits<float>::epsilon()}, 0).pass);
  EXPECT_FALSE(check("output", {2}, ref, {0.5f, 1.0f + 1e-5f}, 0).pass);
}

TEST_P(GoldenCheckerTest, NonFiniteValuesMustMatchExactly) {
  EXPECT_TRUE(check("output", {3}, {1, kNan, kInf}, {1, kNan, kInf}).pass);
  EXPECT_FALSE(check("output", {3}, {1, kNan, kInf}, {1, 0, kInf}).pass) << "a NaN reference needs a NaN";
  EXPECT_FALSE(check("output", {3}, {1, kNan, kInf}, {1, kNan, -kInf}).pass) << "the other infinity";
  EXPECT_FALSE(check("output", {3}, {1, 2, 3}, {1, kInf, 3}).pass) << "an infinity where the reference is finite";
  EXPECT_FALSE(check("output", {3}, {1, 2, 3}, {1, kNan, 3}).pass) << "a NaN where the reference is finite";
}

TEST_P(GoldenCheckerTest, PaddedRowsAreCheckedToBeFiniteNotSkipped) {
  // (B=1, S=2, E=2); position 1 padded: its reference row is zeroed.
  const std::vector<float> ref = {1, 2, 0, 0};
  EXPECT_TRUE(check("output_masked", {1, 2, 2}, ref, {1, 2, 5, 6}, -1, {0, 1}, {1, 2}).pass);
  EXPECT_FALSE(check("output_masked", {1, 2, 2}, ref, {1, 2, kNan, 6}, -1, {0, 1}, {1, 2}).pass);
  EXPECT_FALSE(check("output_masked", {1, 2, 2}, ref, {1, 7, 5, 6}, -1, {0, 1}, {1, 2}).pass) << "an unpadded row differs";
  EXPECT_FALSE(check("output_masked", {1, 2, 2}, {1, 2, 3, 0}, {1, 2, 3, 0}, -1, {0, 1}, {1, 2}).pass)
      << "a reference whose padded row is not zeroed";
}

TEST_P(GoldenCheckerTest, PaddedRowsFollowTheOutputsLayout) {
  // Sequence-first output (S=2, B=2, E=1); the mask is (B, S): batch 0, position 1 padded. Its
  // row in the output is s * B + b = 2, not 1.
  const std::vector<std::uint8_t> mask = {0, 1, 0, 0};
  const std::vector<float> ref = {1, 2, 0, 4};
  EXPECT_TRUE(check("output_masked", {2, 2, 1}, ref, {1, 2, 9, 4}, -1, mask, {2, 2}, false).pass);
  EXPECT_FALSE(check("output_masked", {2, 2, 1}, ref, {1, 9, 0, 4}, -1, mask, {2, 2}, false).pass);
}

INSTANTIATE_TEST_SUITE_P(Devices, GoldenCheckerTest, testing::Values(std::string("cpu")), test::param_name);
