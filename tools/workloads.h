#pragma once
// The benchmark workloads of bench/WORKLOADS.md, with random weights from a fixed seed.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "streampool/nn/module.h"

namespace streampool::bench {

struct Workload {
  std::string name;
  std::shared_ptr<nn::Module> model;                       // shared by every thread
  std::function<Tensor(const Tensor&)> forward;            // one request
  std::function<Tensor(const Device&, DType)> make_input;  // one request's input
};

const std::vector<std::string>& workload_names();  // mlp, encoder, linear4096, conv1d, bert-minilm
// Throws InvalidArgument for an unknown name.
Workload make_workload(const std::string& name, const Device& device, DType dtype);

}  // namespace streampool::bench
