// libFuzzer target: the safetensors parser must answer every input with a valid file or a
// FormatError; anything else (a crash, another exception, a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>

#include "streampool/error.h"
#include "streampool/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto f = streampool::SafetensorsFile::from_bytes(data, size);
    volatile unsigned sum = 0;
    for (const auto& e : f.entries()) {
      const auto* p = static_cast<const unsigned char*>(f.raw(e));
      for (std::uint64_t i = 0; i < e.end - e.begin; ++i) sum = sum + p[i];  // every span is readable
    }
  } catch (const streampool::FormatError&) {
  }
  return 0;
}
