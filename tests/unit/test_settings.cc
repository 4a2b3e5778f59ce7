#include <gtest/gtest.h>

#include "support/work.h"

using namespace streampool;
using test::run_helper;

TEST(Settings, ParsePoolExhausted_cpu) {
  EXPECT_EQ(parse_pool_exhausted("share").policy, ExhaustedPolicy::share);
  EXPECT_EQ(parse_pool_exhausted("error").policy, ExhaustedPolicy::error);
  auto w = parse_pool_exhausted("wait");
  EXPECT_EQ(w.policy, ExhaustedPolicy::wait);
  EXPECT_LT(w.wait_ms, 0);
  auto wm = parse_pool_exhausted("wait:250");
  EXPECT_EQ(wm.policy, ExhaustedPolicy::wait);
  EXPECT_EQ(wm.wait_ms, 250);
  EXPECT_EQ(to_string(wm), "wait:250");
  for (const char* bad : {"", "Share", "wait:", "wait:-1", "wait:1.5", "wait:abc", "block", "error "}) {
    EXPECT_THROW(parse_pool_exhausted(bad), ConfigError) << bad;
  }
}

TEST(Settings, ParseGraphMode_cpu) {
  EXPECT_EQ(parse_graph_mode("auto"), GraphMode::automatic);
  EXPECT_EQ(parse_graph_mode("always"), GraphMode::always);
  EXPECT_EQ(parse_graph_mode("never"), GraphMode::never);
  EXPECT_EQ(to_string(GraphMode::automatic), "auto");
  for (const char* bad : {"", "Auto", "sometimes", "1", "never "}) {
    try {
      parse_graph_mode(bad);
      ADD_FAILURE() << "'" << bad << "' accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("STREAMPOOL_GRAPH"), std::string::npos) << e.what();
    }
  }
}

TEST(Settings, DefaultsInEffect_cpu) {
  auto r = run_helper("streams", "-u STREAMPOOL_STREAMS_PER_DEVICE");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("streams=32"), std::string::npos) << r.output;
  r = run_helper("policy", "-u STREAMPOOL_POOL_EXHAUSTED");
  EXPECT_NE(r.output.find("policy=share"), std::string::npos) << r.output;
}

TEST(Settings, StreamsPerDeviceFromEnvironment_cpu) {
  auto r = run_helper("streams", "STREAMPOOL_STREAMS_PER_DEVICE=4");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("streams=4"), std::string::npos) << r.output;
}

TEST(Settings, BadValuesGiveConfigErrorNamingTheVariable_cpu) {
  for (const char* v : {"0", "abc", "2000", "-3", "4x"}) {
    auto r = run_helper("current cpu", std::string("STREAMPOOL_STREAMS_PER_DEVICE=") + v);
    EXPECT_EQ(r.status, 3) << v << ": " << r.output;
    EXPECT_NE(r.output.find("STREAMPOOL_STREAMS_PER_DEVICE"), std::string::npos) << r.output;
  }
  auto r = run_helper("current cpu", "STREAMPOOL_POOL_EXHAUSTED=sometimes");
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("STREAMPOOL_POOL_EXHAUSTED"), std::string::npos) << r.output;
}

TEST(Settings, ErrorPolicyFromEnvironment_cpu) {
  auto r = run_helper("exhaust cpu", "STREAMPOOL_STREAMS_PER_DEVICE=2 STREAMPOOL_POOL_EXHAUSTED=error");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("PoolExhaustedError"), std::string::npos) << r.output;
}

TEST(Settings, ErrorPolicyFromEnvironment_cuda) {
  if (test::skip_unless_available("cuda")) GTEST_SKIP() << "no CUDA device visible";
  auto r = run_helper("exhaust cuda", "STREAMPOOL_STREAMS_PER_DEVICE=2 STREAMPOOL_POOL_EXHAUSTED=error");
  EXPECT_EQ(r.status, 0) << r.output;
}

// STREAMPOOL_GEMM_TUNING is read at first device use, on every build (a CPU-only one too).
TEST(Settings, GemmTuningBadValueNamesTheVariable_cpu) {
  auto r = run_helper("current cpu", "STREAMPOOL_GEMM_TUNING=yes");
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("STREAMPOOL_GEMM_TUNING='yes' is not one of: 0, 1, false, true"), std::string::npos) << r.output;
  for (const char* ok : {"STREAMPOOL_GEMM_TUNING=0", "STREAMPOOL_GEMM_TUNING=1"}) {
    r = run_helper("current cpu", ok);
    EXPECT_EQ(r.status, 0) << ok << ": " << r.output;
  }
}

TEST(Settings, CpuThreadsAndCpuGemmBadValuesNameTheVariable_cpu) {
  for (const char* var : {"STREAMPOOL_CPU_THREADS", "STREAMPOOL_CPU_BLAS_THREADS"}) {
    for (const char* v : {"0", "abc", "257", "-1"}) {
      auto r = run_helper("current cpu", std::string(var) + "=" + v);
      EXPECT_EQ(r.status, 3) << var << "=" << v << ": " << r.output;
      EXPECT_NE(r.output.find(std::string(var) + "='" + v + "'"), std::string::npos) << r.output;
    }
  }
  auto r = run_helper("current cpu", "STREAMPOOL_CPU_GEMM=mkl");
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("STREAMPOOL_CPU_GEMM='mkl' is not one of: onednn, openblas"), std::string::npos) << r.output;
  for (const char* ok : {"STREAMPOOL_CPU_GEMM=openblas", "STREAMPOOL_CPU_THREADS=4", "STREAMPOOL_CPU_BLAS_THREADS=2"}) {
    r = run_helper("current cpu", ok);
    EXPECT_EQ(r.status, 0) << ok << ": " << r.output;
  }
}
