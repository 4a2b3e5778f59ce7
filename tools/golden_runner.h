#pragma once
// Runs reference cases in the format of tests/data/golden/README.md: a manifest.json naming,
// per case, its kind, config, parameter names, inputs and outputs, and a safetensors file.
// Generic: any case of a known kind, of any shapes and sizes, is built from its description.

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "streampool/nn/module.h"
#include "streampool/safetensors.h"

namespace streampool::golden {

struct Case {
  std::string name, file, kind;
  nlohmann::json config;
  std::vector<std::string> params, inputs, outputs;
};

// Reads DIR/manifest.json; throws FormatError naming what is wrong.
std::vector<Case> load_manifest(const std::string& dir);

// A case's model with its weights on a device in a dtype; run() is const and thread-safe.
class Model {
 public:
  virtual ~Model() = default;
  // Inputs by name (already on the device; float inputs in the model's dtype) -> outputs by name.
  virtual std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs) const = 0;
};

// Builds the model of `c` from the case file's parameters; throws InvalidArgument / FormatError.
std::unique_ptr<Model> build(const Case& c, const SafetensorsFile& file, const Device& device, DType dtype);

// The case's inputs on `device`, float ones cast to `dtype`.
std::map<std::string, Tensor> load_inputs(const Case& c, const SafetensorsFile& file, const Device& device, DType dtype);

struct Result {
  std::string name;
  double max_abs = 0, max_rel = 0;  // worst over all outputs
  double ratio = 0;                 // worst max_abs / PyTorch's own max_abs in this dtype
  bool ratio_known = true;          // false: some output had no PyTorch figure (fixed tolerance)
  bool pass = false;
  std::string detail;  // the failing output, or the error
};

// Outputs compared against the file's references. Each output's worst error must stay within
// 1.5x PyTorch's own error in `dtype` on that kind of device (DIR/torch_error.json for CUDA,
// DIR/torch_error_cpu.json for the CPU), with a floor of a few units in the last place of its
// largest value; without a figure, the README's fixed tolerance.
// Non-finite references must be matched exactly. Padded positions (zeroed rows of the
// reference, as the README says) must be finite in ours and are not compared.
Result compare(const Case& c, const SafetensorsFile& file, const std::map<std::string, Tensor>& inputs,
               const std::map<std::string, Tensor>& outputs, DType dtype, const std::string& dir, const Device& device);

// build + load_inputs + run + compare; never throws (errors become a failed Result).
Result run_case(const std::string& dir, const Case& c, const Device& device, DType dtype);

}  // namespace streampool::golden
