#include <gtest/gtest.h>

#include <unordered_set>

#include "support/work.h"

using namespace streampool;

TEST(Device, ParseAndPrint_cpu) {
  EXPECT_EQ(Device::parse("cpu"), Device(DeviceKind::cpu, 0));
  EXPECT_EQ(Device::parse("cpu:0"), Device(DeviceKind::cpu, 0));
  EXPECT_EQ(Device::parse("cuda"), Device(DeviceKind::cuda, 0));
  EXPECT_EQ(Device::parse("cuda:1"), Device(DeviceKind::cuda, 1));
  EXPECT_EQ(Device(DeviceKind::cuda, 3).str(), "cuda:3");
  EXPECT_EQ(Device(DeviceKind::cpu).str(), "cpu");
  std::ostringstream os;
  os << Device(DeviceKind::cuda, 2);
  EXPECT_EQ(os.str(), "cuda:2");
}

TEST(Device, ParseRejectsBadText_cpu) {
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cpu:1", "CUDA", "cuda:99999", "mps"}) {
    EXPECT_THROW(Device::parse(bad), InvalidArgument) << bad;
  }
  try {
    Device::parse("gpu:0");
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("gpu:0"), std::string::npos);
  }
}

TEST(Device, HashAndEquality_cpu) {
  std::unordered_set<Device> set{Device(DeviceKind::cpu), Device(DeviceKind::cuda, 0), Device(DeviceKind::cuda, 1)};
  EXPECT_EQ(set.size(), 3u);
  EXPECT_TRUE(set.count(Device::parse("cuda:1")));
  std::unordered_set<Stream> streams{Stream(Device(DeviceKind::cpu), 1), Stream(Device(DeviceKind::cpu), 2),
                                     Stream(Device(DeviceKind::cpu), 1)};
  EXPECT_EQ(streams.size(), 2u);
}

TEST(Device, CountsAndMissingDevices_cpu) {
  EXPECT_EQ(device_count(DeviceKind::cpu), 1);
  EXPECT_GE(device_count(DeviceKind::cuda), 0);
  EXPECT_NO_THROW(check_device(Device(DeviceKind::cpu)));
  int n = device_count(DeviceKind::cuda);
  EXPECT_THROW(check_device(Device(DeviceKind::cuda, n)), DeviceError);
  EXPECT_THROW(current_stream(Device(DeviceKind::cuda, n + 7)), DeviceError);
}

// A nonexistent CPU index is named as such ("cpu:1"), not as the CPU that exists.
TEST(Device, MissingCpuIndexIsNamed_cpu) {
  EXPECT_EQ(Device(DeviceKind::cpu, 1).str(), "cpu:1");
  try {
    check_device(Device(DeviceKind::cpu, 1));
    ADD_FAILURE() << "cpu:1 accepted";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("device cpu:1 does not exist"), std::string::npos) << e.what();
  }
}

TEST(Device, PropertiesAndSelfTest_cpu) {
  DeviceProperties p = device_properties(Device(DeviceKind::cpu));
  EXPECT_FALSE(p.name.empty());
  EXPECT_GT(p.total_memory, 0u);
  EXPECT_GT(p.multiprocessors, 0);
  EXPECT_NO_THROW(self_test(Device(DeviceKind::cpu)));
}

TEST(Device, PropertiesAndSelfTest_cuda) {
  if (test::skip_unless_available("cuda")) GTEST_SKIP() << "no CUDA device visible";
  Device d(DeviceKind::cuda, 0);
  DeviceProperties p = device_properties(d);
  EXPECT_FALSE(p.name.empty());
  EXPECT_GT(p.total_memory, 0u);
  EXPECT_GT(p.multiprocessors, 0);
  EXPECT_GE(p.compute_capability_major, 5);
  EXPECT_GT(backend_versions(DeviceKind::cuda).runtime, 0);
  EXPECT_GT(backend_versions(DeviceKind::cuda).driver, 0);
  EXPECT_NO_THROW(self_test(d));
}
