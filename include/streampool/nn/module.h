#pragma once
// Module: the base of the nn layer. A module is configured, loaded once (load_state_dict), and
// then immutable: forward() is const and safe from any number of threads at once, each on its
// own stream. Loading ends by waiting for the copies, so the weights are ready on every stream.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "streampool/tensor.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool::nn {

using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) const = 0;
  Tensor operator()(const Tensor& x) const { return forward(x); }

  // Every parameter with its PyTorch / Hugging Face name and expected shape.
  std::vector<std::pair<std::string, Shape>> parameters() const;

  // Loads every parameter from `state` onto `device` in `dtype` (float parameters are
  // converted). Missing, unexpected or wrongly shaped entries give one InvalidArgument listing
  // them all; nothing is changed then. Entries matching `ignore_prefixes` are not "unexpected".
  void load_state_dict(const StateDict& state, const Device& device, DType dtype = DType::float32,
                       const std::vector<std::string>& ignore = {});
  void load_safetensors(const std::string& path, const Device& device, DType dtype = DType::float32);

  bool loaded() const { return loaded_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

 protected:
  struct Param {
    std::string name;
    Shape shape;
    Tensor* slot;
  };
  // Appends this module's parameters (and its children's, prefixed) to `out`.
  virtual void collect(const std::string& prefix, std::vector<Param>& out) = 0;
  // Lets a container collect its children's parameters.
  static void collect_child(Module& child, const std::string& prefix, std::vector<Param>& out) {
    child.collect(prefix, out);
  }
  // Throws unless `param` was loaded (children are loaded through their parent, so each module
  // checks its own parameters rather than a flag).
  static void check_loaded(const char* op, const Tensor& param);

 private:
  bool loaded_ = false;
  Device device_;
  DType dtype_ = DType::float32;
};

}  // namespace streampool::nn
STREAMPOOL_API_END
