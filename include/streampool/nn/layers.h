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
  Output forward(const Input& in) const override;
  InputSpec input_spec() const override;
  // The GEMM with `act` fused into its epilogue where the backend can (containers use it to
  // run a Linear and the activation after it as one op).
  Tensor forward_fused(const Tensor& x, Activation act) const;
  const Tensor& weight() const { return param(weight_); }
  const Tensor& bias() const { return param(bias_); }  // undefined without a bias
  const std::int64_t in_features, out_features;

 private:
  int weight_, bias_;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::int64_t normalized_shape, double eps = 1e-5);
  Output forward(const Input& in) const override;
  InputSpec input_spec() const override;
  const Tensor& weight() const { return param(weight_); }
  const Tensor& bias() const { return param(bias_); }
  const std::int64_t size;
  const double eps;

 private:
  int weight_, bias_;
};

class Conv1d : public Module {
 public:
  Conv1d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, int stride = 1, int padding = 0,
         bool bias = true);
  Output forward(const Input& in) const override;
  InputSpec input_spec() const override;
  // The convolution with `act` after it, fused where the backend can (Sequential uses it).
  Tensor forward_fused(const Tensor& x, Activation act) const;
  const Tensor& weight() const { return param(weight_); }
  const Tensor& bias() const { return param(bias_); }  // undefined without a bias
  const std::int64_t in_channels, out_channels, kernel_size;
  const int stride, padding;

 protected:
  void prepare(const Device& device) override;

 private:
  int weight_, bias_;
  // On CUDA the weight with the bias folded in (Note [Folded convolution bias]); else undefined.
  // Written by load_state_dict (prepare), read-only after, as the parameters are.
  Tensor folded_;
};

// GELU (erf or tanh), ReLU, SiLU, Tanh: no parameters.
class ActivationLayer : public Module {
 public:
  explicit ActivationLayer(Activation act) : Module("ActivationLayer"), act(act) {}
  Output forward(const Input& in) const override;
  const Activation act;
};

// Children named "0", "1", ... as in torch.nn.Sequential. A Linear followed by an activation
// runs as one GEMM with the activation fused.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  // Appends a layer; only while building (before loading).
  Sequential& add(std::unique_ptr<Module> m);
  Output forward(const Input& in) const override;
  InputSpec input_spec() const override;
  std::size_t size() const { return layers_.size(); }
  const Module& operator[](std::size_t i) const { return *layers_.at(i); }

 private:
  std::vector<std::unique_ptr<Module>> layers_;
};

// Linear(sizes[0] -> sizes[1]), act, ..., Linear(-> sizes.back()): as nn.Sequential indices.
std::unique_ptr<Sequential> make_mlp(const std::vector<std::int64_t>& sizes, Activation act);

}  // namespace streampool::nn
STREAMPOOL_API_END
