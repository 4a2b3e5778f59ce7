#include "streampool/nn/layers.h"

#include "ops/folded_conv1d.h"
#include "streampool/error.h"

namespace streampool::nn {

Linear::Linear(std::int64_t in, std::int64_t out, bool has_bias)
    : Module("Linear"), in_features(in), out_features(out) {
  if (in < 0 || out < 0) throw InvalidArgument("Linear: negative size");
  weight_ = register_parameter("weight", {out, in});
  bias_ = has_bias ? register_parameter("bias", {out}) : -1;
}

Output Linear::forward(const Input& in) const {
  check_input(in, takes_x);
  return {forward_fused(in.x, Activation::none), Tensor()};
}

Tensor Linear::forward_fused(const Tensor& x, Activation act) const { return linear(x, weight(), bias(), act); }

LayerNorm::LayerNorm(std::int64_t n, double e) : Module("LayerNorm"), size(n), eps(e) {
  weight_ = register_parameter("weight", {n});
  bias_ = register_parameter("bias", {n});
}

Output LayerNorm::forward(const Input& in) const {
  check_input(in, takes_x);
  return {layer_norm(in.x, weight(), bias(), eps), Tensor()};
}

Conv1d::Conv1d(std::int64_t in, std::int64_t out, std::int64_t k, int s, int p, bool has_bias)
    : Module("Conv1d"), in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p) {
  weight_ = register_parameter("weight", {out, in, k});
  bias_ = has_bias ? register_parameter("bias", {out}) : -1;
}

Output Conv1d::forward(const Input& in) const {
  check_input(in, takes_x);
  return {forward_fused(in.x, Activation::none), Tensor()};
}

Tensor Conv1d::forward_fused(const Tensor& x, Activation act) const {
  const Tensor& w = weight();  // throws unless loaded (a load that failed in prepare may leave folded_)
  if (folded_.defined()) return detail::conv1d_folded(x, folded_, in_channels, kernel_size, stride, padding, act);
  return conv1d(x, w, bias(), stride, padding, act);
}

void Conv1d::prepare(const Device& device) {
  // A kernel-1 convolution without padding or stride reads its input as its column matrix:
  // folding would add a copy for the pass it saves (Note [Folded convolution bias]).
  const bool direct = kernel_size == 1 && stride == 1 && padding == 0;
  if (device.kind == DeviceKind::cuda && bias_ >= 0 && !direct) folded_ = detail::fold_conv1d_bias(weight(), bias());
}

Output ActivationLayer::forward(const Input& in) const {
  check_input(in, takes_x);
  return {activation(in.x, act), Tensor()};
}

Sequential& Sequential::add(std::unique_ptr<Module> m) {
  if (!m) throw InvalidArgument("Sequential::add: null module");
  if (loaded()) throw InvalidArgument("Sequential::add: the Sequential is already loaded");
  register_module(std::to_string(layers_.size()) + ".", *m);
  layers_.push_back(std::move(m));
  return *this;
}

Output Sequential::forward(const Input& in) const {
  check_input(in, takes_x);
  Tensor h = in.x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto* lin = dynamic_cast<const Linear*>(layers_[i].get());
    const auto* conv = dynamic_cast<const Conv1d*>(layers_[i].get());
    const auto* act = i + 1 < layers_.size() ? dynamic_cast<const ActivationLayer*>(layers_[i + 1].get()) : nullptr;
    if ((lin || conv) && act) {
      h = lin ? lin->forward_fused(h, act->act) : conv->forward_fused(h, act->act);
      ++i;
    } else {
      h = call(*layers_[i], h);
    }
  }
  return {h, Tensor()};
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

namespace streampool::nn {

InputSpec Linear::input_spec() const {
  InputSpec s;
  s.last_dim = in_features;
  return s;
}

InputSpec LayerNorm::input_spec() const {
  InputSpec s;
  s.last_dim = size;
  return s;
}

// The length may differ between requests, but zero padding would change the outputs near the
// end (the next layer sees the padded positions), so only equal lengths batch together.
InputSpec Conv1d::input_spec() const {
  InputSpec s;
  s.dims = {in_channels, -1};
  s.seq_dim = 2;
  return s;
}

// The first layer's spec, without padding: Sequential passes no mask on.
InputSpec Sequential::input_spec() const {
  for (const auto& l : layers_) {
    if (dynamic_cast<const ActivationLayer*>(l.get())) continue;
    InputSpec s = l->input_spec();
    s.pad = false;
    return s;
  }
  return {};
}

}  // namespace streampool::nn
