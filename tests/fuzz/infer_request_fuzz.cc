// libFuzzer target: the Open Inference Protocol's request parser (src/server/protocol.cc) must
// answer every body with a request or an InvalidArgument; anything else (a crash, another
// exception, a sanitizer report, a huge allocation) is a finding. The first byte picks whether an
// Inference-Header-Content-Length is given and where it points; a parsed request's inputs are
// written back through the response writer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/protocol.h"
#include "streampool/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::optional<std::size_t> json_length;
  if (data[0] & 1) json_length = body.size() - std::min<std::size_t>(body.size(), data[0] >> 1);
  try {
    const auto req = streampool::server::parse_infer_request(body, json_length);
    streampool::server::InferResponse r;
    for (const auto& in : req.inputs) r.outputs.push_back({in.name, in.dtype, in.shape, in.data, (data[0] & 2) != 0});
    std::optional<std::size_t> jl;
    (void)streampool::server::write_infer_response(r, &jl);
  } catch (const streampool::InvalidArgument&) {
  }
  return 0;
}
