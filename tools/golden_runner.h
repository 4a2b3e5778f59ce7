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
  bool pass = false;
  std::string detail;  // the failing output, or the error
};

// Outputs compared against the file's references with the README's tolerances for `dtype`
// (rows of padded positions zeroed in both, as the README says).
Result compare(const Case& c, const SafetensorsFile& file, const std::map<std::string, Tensor>& inputs,
               const std::map<std::string, Tensor>& outputs, DType dtype);

// build + load_inputs + run + compare; never throws (errors become a failed Result).
Result run_case(const std::string& dir, const Case& c, const Device& device, DType dtype);

}  // namespace streampool::golden
