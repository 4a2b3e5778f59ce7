#pragma once
// Basic layers: Linear, LayerNorm, Conv1d, activations, Sequential, and the MLP builder.

#include <memory>
#include <vector>

#include "streampool/nn/module.h"
#include "streampool/ops.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool::nn {

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) const override;
  // The GEMM with `act` fused into its epilogue where the backend can.
  Tensor forward(const Tensor& x, Activation act) const;
  std::int64_t in_features, out_features;
  Tensor weight, bias;

 protected:
  void collect(const std::string& prefix, std::vector<Param>& out) override;

 private:
  bool has_bias_;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::int64_t normalized_shape, double eps = 1e-5);
  Tensor forward(const Tensor& x) const override;
  std::int64_t size;
  double eps;
  Tensor weight, bias;

 protected:
  void collect(const std::string& prefix, std::vector<Param>& out) override;
};

class Conv1d : public Module {
 public:
  Conv1d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, int stride = 1, int padding = 0,
         bool bias = true);
  Tensor forward(const Tensor& x) const override;
  std::int64_t in_channels, out_channels, kernel_size;
  int stride, padding;
  Tensor weight, bias;

 protected:
  void collect(const std::string& prefix, std::vector<Param>& out) override;

 private:
  bool has_bias_;
};

// GELU (erf or tanh), ReLU, SiLU, Tanh: no parameters.
class ActivationLayer : public Module {
 public:
  explicit ActivationLayer(Activation act) : act(act) {}
  Tensor forward(const Tensor& x) const override;
  const Activation act;

 protected:
  void collect(const std::string&, std::vector<Param>&) override {}
};

// Children named "0", "1", ... as in torch.nn.Sequential. A Linear followed by an activation
// runs as one GEMM with the activation fused.
class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential& add(std::unique_ptr<Module> m);
  Tensor forward(const Tensor& x) const override;
  std::size_t size() const { return layers_.size(); }
  const Module& operator[](std::size_t i) const { return *layers_.at(i); }

 protected:
  void collect(const std::string& prefix, std::vector<Param>& out) override;

 private:
  std::vector<std::unique_ptr<Module>> layers_;
};

// Linear(sizes[0] -> sizes[1]), act, ..., Linear(-> sizes.back()): as nn.Sequential indices.
std::unique_ptr<Sequential> make_mlp(const std::vector<std::int64_t>& sizes, Activation act);

}  // namespace streampool::nn
STREAMPOOL_API_END
