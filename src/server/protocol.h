#pragma once
// The Open Inference Protocol (KServe v2) inference request and response as HTTP/REST carries
// them: JSON tensors, and the binary tensor data extension (raw tensor bytes after the JSON, its
// length in the Inference-Header-Content-Length header). Pure functions: no I/O and no model,
// shared by the HTTP front end and the fuzz target. Every malformed or hostile input raises
// InvalidArgument naming what is wrong; nothing here trusts a size it has not checked.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "streampool/dtype.h"
#include "streampool/tensor.h"

namespace streampool::server {

// "FP32", "FP16", "BF16", "INT64", "INT32", "UINT8", "BOOL": the protocol's names of the dtypes
// streampool has; nullopt for the others (FP64, INT8, BYTES, ...).
std::optional<DType> dtype_from_protocol(std::string_view datatype);
const char* protocol_datatype(DType dtype);

struct RequestTensor {
  std::string name;
  DType dtype = DType::float32;
  Shape shape;
  std::string data;  // the elements, row-major, little-endian, exactly shape's count x dtype size
};

struct RequestedOutput {
  std::string name;
  bool binary = false;  // parameters.binary_data
};

struct InferRequest {
  std::string id;  // echoed in the response
  std::vector<RequestTensor> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output
  bool binary_data_output = false;       // parameters.binary_data_output: all outputs binary
  std::optional<std::int64_t> timeout_us;  // parameters.timeout, microseconds (Triton's)
  int priority = 0;                        // parameters.priority
};

struct ProtocolLimits {
  std::size_t max_tensors = 64;                     // inputs or requested outputs
  std::size_t max_elements = std::size_t{1} << 28;  // per tensor
};

// Parses an inference request body. `json_length` is the Inference-Header-Content-Length
// header's value: the first that many bytes are the JSON, the rest the binary data of the inputs
// whose parameters name a binary_data_size, in the order the inputs are listed (all of it, no
// byte left over). Without it the whole body is JSON.
InferRequest parse_infer_request(std::string_view body, std::optional<std::size_t> json_length,
                                 const ProtocolLimits& limits = {});

struct ResponseTensor {
  std::string name;
  DType dtype = DType::float32;
  Shape shape;
  std::string data;  // row-major little-endian elements
  bool binary = false;
};

struct InferResponse {
  std::string model_name, model_version, id;
  std::vector<ResponseTensor> outputs;
};

// The response body; `json_length` gets the JSON part's length when an output is binary (the
// Inference-Header-Content-Length to send), nullopt when the body is JSON only.
std::string write_infer_response(const InferResponse& response, std::optional<std::size_t>* json_length);

// {"error": message}, the protocol's error body.
std::string error_body(std::string_view message);

}  // namespace streampool::server
