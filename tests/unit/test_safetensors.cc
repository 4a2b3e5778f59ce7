// safetensors: every golden file loads (values spot-checked against the relations they must
// satisfy), round trips, and every malformed input is a FormatError.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "support/work.h"

using namespace streampool;
namespace fs = std::filesystem;

namespace {

const fs::path kGolden = fs::path(test::source_dir()) / "tests/data/golden";
const fs::path kCorpus = fs::path(test::source_dir()) / "tests/fuzz/corpus";

class SafetensorsTest : public test::DeviceTest {};

std::vector<float> load_f(const SafetensorsFile& f, const std::string& name, const Device& d) {
  return f.load(name, d).to_vector<float>();
}

}  // namespace

TEST_P(SafetensorsTest, EveryGoldenFileLoadsAsTheManifestSays) {
  std::ifstream in(kGolden / "manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  int cases = 0;
  for (const auto& c : manifest["cases"]) {
    SafetensorsFile f = SafetensorsFile::open((kGolden / c["file"].get<std::string>()).string());
    for (const char* group : {"params", "inputs", "outputs"}) {
      for (const auto& name : c[group]) {
        ASSERT_TRUE(f.contains(name.get<std::string>())) << c["name"] << ": " << name;
      }
    }
    auto all = f.load_all(device);
    for (const auto& [name, t] : all) {
      EXPECT_EQ(t.device(), device);
      if (t.dtype() != DType::float32) continue;
      for (float x : t.to_vector<float>()) ASSERT_TRUE(std::isfinite(x)) << c["name"] << ": " << name;
    }
    ++cases;
  }
  EXPECT_EQ(cases, 10);
}

TEST_P(SafetensorsTest, GoldenLinearValuesHold) {
  SafetensorsFile f = SafetensorsFile::open((kGolden / "linear_256_128.safetensors").string());
  auto x = load_f(f, "input", device), w = load_f(f, "weight", device), b = load_f(f, "bias", device),
       y = load_f(f, "output", device);
  const Shape xs = f.entry("input").shape;
  const std::int64_t rows = xs[0], in = 256, out = 128;
  ASSERT_EQ(f.entry("weight").shape, (Shape{out, in}));
  ASSERT_EQ(static_cast<std::int64_t>(y.size()), rows * out);
  double worst = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t o = 0; o < out; ++o) {
      double acc = b[o];
      for (std::int64_t i = 0; i < in; ++i) acc += static_cast<double>(x[r * in + i]) * w[o * in + i];
      worst = std::max(worst, std::abs(acc - y[r * out + o]) / (1e-4 + 1e-4 * std::abs(acc)));
    }
  }
  EXPECT_LE(worst, 1.0) << "output = input @ weight^T + bias";
}

TEST_P(SafetensorsTest, GoldenActivationValuesHold) {
  SafetensorsFile f = SafetensorsFile::open((kGolden / "activations.safetensors").string());
  auto x = load_f(f, "input", device), relu = load_f(f, "relu", device), gelu = load_f(f, "gelu_erf", device),
       silu = load_f(f, "silu", device);
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(relu[i], std::max(x[i], 0.0f));
    double g = 0.5 * x[i] * (1 + std::erf(x[i] / std::sqrt(2.0)));
    EXPECT_NEAR(gelu[i], g, 1e-5 + 1e-5 * std::abs(g));
    double s = x[i] / (1 + std::exp(-static_cast<double>(x[i])));
    EXPECT_NEAR(silu[i], s, 1e-5 + 1e-5 * std::abs(s));
  }
}

TEST_P(SafetensorsTest, RoundTripAllDtypesViewsAndMetadata) {
  fs::path p = fs::temp_directory_path() / ("streampool_rt_" + GetParam() + "_" + std::to_string(getpid()) + ".safetensors");
  Tensor a = rand({3, 4}, DType::float32, device, 1);
  Tensor h = rand({5}, DType::float16, device, 2);
  Tensor bf = rand({2, 2}, DType::bfloat16, device, 3);
  Tensor i64 = from_vector(std::vector<std::int64_t>{1, -2, 3}, {3}, device);
  Tensor i32 = from_vector(std::vector<std::int32_t>{7, 8}, {2}, device);
  Tensor u8 = full({4}, 200, DType::uint8, device);
  Tensor flag = full({2}, 1, DType::boolean, device);
  Tensor view = a.transpose(0, 1);  // stored contiguous
  Tensor none = empty({0, 3}, DType::float32, device);
  save_safetensors(p.string(), {{"a", a}, {"h", h}, {"bf", bf}, {"i64", i64}, {"i32", i32}, {"u8", u8}, {"flag", flag},
                                {"view", view}, {"none", none}},
                   {{"format", "pt"}, {"note", "round trip"}});
  SafetensorsFile f = SafetensorsFile::open(p.string());
  EXPECT_EQ(f.metadata().at("note"), "round trip");
  EXPECT_EQ(f.entries().size(), 9u);
  EXPECT_EQ(f.load("a", device).to_vector<float>(), a.to_vector<float>());
  EXPECT_EQ(f.load("h", device).to_float_vector(), h.to_float_vector());
  EXPECT_EQ(f.load("bf", device).to_float_vector(), bf.to_float_vector());
  EXPECT_EQ(f.load("i64", device).to_vector<std::int64_t>(), i64.to_vector<std::int64_t>());
  EXPECT_EQ(f.load("i32", device).to_vector<std::int32_t>(), i32.to_vector<std::int32_t>());
  EXPECT_EQ(f.load("u8", device).to_vector<std::uint8_t>(), u8.to_vector<std::uint8_t>());
  EXPECT_EQ(f.load("flag", device).to_vector<bool>(), flag.to_vector<bool>());
  EXPECT_EQ(f.load("view", device).shape(), (Shape{4, 3}));
  EXPECT_EQ(f.load("view", device).to_vector<float>(), view.contiguous().to_vector<float>());
  EXPECT_EQ(f.load("none", device).numel(), 0);
  EXPECT_EQ(f.entry("a").dtype_code, "F32");
  EXPECT_THROW(f.entry("missing"), InvalidArgument);
  fs::remove(p);
}

INSTANTIATE_TEST_SUITE_P(Devices, SafetensorsTest, STREAMPOOL_DEVICES, test::param_name);

TEST(SafetensorsFormat, FuzzCorpusAnswersValidOrFormatError_cpu) {
  int valid = 0, rejected = 0;
  for (const auto& entry : fs::directory_iterator(kCorpus)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const bool should_be_valid = entry.path().filename().string().rfind("valid", 0) == 0;
    try {
      SafetensorsFile::from_bytes(bytes.data(), bytes.size());
      ++valid;
      EXPECT_TRUE(should_be_valid) << entry.path();
    } catch (const FormatError& e) {
      ++rejected;
      EXPECT_FALSE(should_be_valid) << entry.path() << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("malformed safetensors"), std::string::npos) << e.what();
    }
  }
  EXPECT_GE(valid, 3);
  EXPECT_GE(rejected, 10);
}

TEST(SafetensorsFormat, EachMalformationHasItsReason_cpu) {
  auto make = [](const std::string& header, std::size_t data) {
    std::string out(8, '\0');
    std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
    return out + header + std::string(data, '\0');
  };
  auto reason = [](const std::string& bytes) {
    try {
      SafetensorsFile::from_bytes(bytes.data(), bytes.size());
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(reason("").find("8-byte header length"), std::string::npos);
  EXPECT_NE(reason(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10)).find("runs past the end"), std::string::npos);
  EXPECT_NE(reason(make("{\"a\":", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(reason(make(std::string(100, '[') + std::string(100, ']'), 0)).find("nests deeper"), std::string::npos);
  EXPECT_NE(reason(make("[1,2]", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}})", 1)).find("unknown dtype"), std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,4]}})", 4)).find("negative"), std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4)).find("needs 8 bytes"), std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})", 4)).find("overflows"),
            std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}})", 4)).find("data area has 4"), std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6))
                .find("overlaps"),
            std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4)).find("belong to no tensor"),
            std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1))
                .find("appears twice"),
            std::string::npos);
  EXPECT_NE(reason(make(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}})", 1)).find("reversed"), std::string::npos);
  EXPECT_NE(reason(make(R"({"__metadata__":{"k":1}})", 0)).find("not a string"), std::string::npos);
  EXPECT_EQ(reason(make(R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8)), "accepted");
  EXPECT_THROW(SafetensorsFile::open("/nonexistent/file.safetensors"), FormatError);
}

namespace {

std::string with_header(const std::string& header, std::size_t data) {
  std::string out(8, '\0');
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + std::string(data, '\0');
}

}  // namespace

// Every FormatError of a file on disk names that file (some lost it when the path moved into
// the result before the checks that follow the JSON parse).
TEST(SafetensorsFormat, EveryMalformationNamesTheFile_cpu) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated", with_header(R"({"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}})", 4)},
      {"overlap", with_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6)},
      {"negative", with_header(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,4]}})", 4)},
      {"overflow", with_header(R"({"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})", 4)},
      {"hole", with_header(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4)},
      {"trailing", with_header(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 4)},
      {"metadata", with_header(R"({"__metadata__":{"k":1}})", 0)},
      {"json", with_header("{\"a\":", 0)},
      {"duplicate", with_header(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1)},
  };
  for (const auto& [what, bytes] : cases) {
    fs::path p = fs::temp_directory_path() / ("streampool_bad_" + what + "_" + std::to_string(getpid()) + ".safetensors");
    {
      std::ofstream out(p, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    try {
      SafetensorsFile::open(p.string());
      ADD_FAILURE() << what << ": accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << what << ": " << e.what();
    }
    fs::remove(p);
  }
}

// A header of 100,000 one-element tensors opens in linear time (the callback parser took
// minutes: O(N^2)), and the duplicate check still holds at that size. The bound is a hang
// detector, two orders of magnitude above the expected time, not a speed target.
TEST(SafetensorsFormat, HundredThousandTensorsOpenInLinearTime_cpu) {
  constexpr int kTensors = 100000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i) {
    if (i) header += ",";
    header += "\"t" + std::to_string(i) + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" + std::to_string(i) + "," +
              std::to_string(i + 1) + "]}";
  }
  std::string good = with_header(header + "}", kTensors);
  const auto start = std::chrono::steady_clock::now();
  SafetensorsFile f = SafetensorsFile::from_bytes(good.data(), good.size());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(f.entries().size(), static_cast<std::size_t>(kTensors));
  EXPECT_EQ(f.entry("t99999").begin, 99999u);
  EXPECT_LT(seconds, 20.0);
  // The same header with the last name repeated: still caught.
  std::string dup = header + ",\"t5\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[100000,100001]}}";
  std::string bytes = with_header(dup, kTensors + 1);
  try {
    SafetensorsFile::from_bytes(bytes.data(), bytes.size());
    ADD_FAILURE() << "a repeated name was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'t5' appears twice"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsFormat, SavingAnUndefinedTensorNamesIt_cpu) {
  fs::path p = fs::temp_directory_path() / ("streampool_undefined_" + std::to_string(getpid()) + ".safetensors");
  try {
    save_safetensors(p.string(), {{"weight", full({2}, 1, DType::float32, Device(DeviceKind::cpu))}, {"bias", Tensor()}});
    ADD_FAILURE() << "saved an undefined tensor";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'bias'"), std::string::npos) << e.what();
  }
  fs::remove(p);
}
