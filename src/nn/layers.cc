#include "streampool/nn/layers.h"

#include "streampool/error.h"

namespace streampool::nn {

Linear::Linear(std::int64_t in, std::int64_t out, bool has_bias)
    : in_features(in), out_features(out), has_bias_(has_bias) {
  if (in < 0 || out < 0) throw InvalidArgument("Linear: negative size");
}

void Linear::collect(const std::string& prefix, std::vector<Param>& out) {
  out.push_back({prefix + "weight", {out_features, in_features}, &weight});
  if (has_bias_) out.push_back({prefix + "bias", {out_features}, &bias});
}

Tensor Linear::forward(const Tensor& x) const { return forward(x, Activation::none); }

Tensor Linear::forward(const Tensor& x, Activation act) const {
  check_loaded("Linear", weight);
  return linear(x, weight, bias, act);
}

LayerNorm::LayerNorm(std::int64_t n, double e) : size(n), eps(e) {}

void LayerNorm::collect(const std::string& prefix, std::vector<Param>& out) {
  out.push_back({prefix + "weight", {size}, &weight});
  out.push_back({prefix + "bias", {size}, &bias});
}

Tensor LayerNorm::forward(const Tensor& x) const {
  check_loaded("LayerNorm", weight);
  return layer_norm(x, weight, bias, eps);
}

Conv1d::Conv1d(std::int64_t in, std::int64_t out, std::int64_t k, int s, int p, bool has_bias)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p), has_bias_(has_bias) {}

void Conv1d::collect(const std::string& prefix, std::vector<Param>& out) {
  out.push_back({prefix + "weight", {out_channels, in_channels, kernel_size}, &weight});
  if (has_bias_) out.push_back({prefix + "bias", {out_channels}, &bias});
}

Tensor Conv1d::forward(const Tensor& x) const {
  check_loaded("Conv1d", weight);
  return conv1d(x, weight, bias, stride, padding);
}

Tensor ActivationLayer::forward(const Tensor& x) const { return activation(x, act); }

Sequential& Sequential::add(std::unique_ptr<Module> m) {
  if (!m) throw InvalidArgument("Sequential::add: null module");
  layers_.push_back(std::move(m));
  return *this;
}

void Sequential::collect(const std::string& prefix, std::vector<Param>& out) {
  for (std::size_t i = 0; i < layers_.size(); ++i) collect_child(*layers_[i], prefix + std::to_string(i) + ".", out);
}

Tensor Sequential::forward(const Tensor& x) const {
  Tensor h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto* lin = dynamic_cast<const Linear*>(layers_[i].get());
    const auto* act = i + 1 < layers_.size() ? dynamic_cast<const ActivationLayer*>(layers_[i + 1].get()) : nullptr;
    if (lin && act) {
      h = lin->forward(h, act->act);
      ++i;
    } else {
      h = layers_[i]->forward(h);
    }
  }
  return h;
}

std::unique_ptr<Sequential> make_mlp(const std::vector<std::int64_t>& sizes, Activation act) {
  if (sizes.size() < 2) throw InvalidArgument("make_mlp: needs at least an input and an output size");
  auto seq = std::make_unique<Sequential>();
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    seq->add(std::make_unique<Linear>(sizes[i], sizes[i + 1]));
    if (i + 2 < sizes.size()) seq->add(std::make_unique<ActivationLayer>(act));
  }
  return seq;
}

}  // namespace streampool::nn
