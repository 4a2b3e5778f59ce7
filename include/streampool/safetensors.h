#pragma once
// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}, "__metadata__": {string: string}}, then the data.
//
// Every malformed input (truncated, empty, a header length past the file, bad JSON, deep
// nesting, duplicate names, unknown dtypes, negative or overflowing shapes, spans outside the
// data area, overlapping or leaving holes) is a FormatError saying why, never a crash, a hang
// or a huge allocation.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "streampool/dtype.h"
#include "streampool/tensor.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool {

struct SafetensorsEntry {
  std::string name;
  std::string dtype_code;        // as in the file: F32, F16, BF16, I64, ...
  std::optional<DType> dtype;    // where streampool has the type
  std::size_t element_size = 0;
  Shape shape;
  std::uint64_t begin = 0;       // byte span inside the data area
  std::uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps the file into memory and validates its header; throws FormatError.
  static SafetensorsFile open(const std::string& path);
  // Validates a file held in memory (copied); throws FormatError.
  static SafetensorsFile from_bytes(const void* data, std::size_t size);

  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // in data order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;  // throws InvalidArgument
  // The raw bytes of a tensor, inside the mapping.
  const void* raw(const SafetensorsEntry& e) const;

  // Copies one tensor straight to `device` (asynchronously on its current stream).
  Tensor load(const std::string& name, const Device& device) const;
  std::map<std::string, Tensor> load_all(const Device& device) const;

  const std::string& path() const { return path_; }

 private:
  struct Mapping;
  static SafetensorsFile parse(std::shared_ptr<Mapping> mapping, std::string path);
  std::shared_ptr<Mapping> mapping_;
  std::string path_;
  const unsigned char* data_area_ = nullptr;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device, any layout; stored contiguous) and metadata to `path`.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace streampool
STREAMPOOL_API_END
