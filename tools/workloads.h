#pragma once
// The benchmark workloads of bench/WORKLOADS.md: modules from the nn registry with random
// weights from a fixed seed, and one request's input.

#include <memory>
#include <string>
#include <vector>

#include "streampool/nn/module.h"

namespace streampool::bench {

struct Workload {
  std::string name;
  std::shared_ptr<const nn::Module> model;  // shared by every thread; one request is model->forward(input)
  Device device;
  DType dtype = DType::float32;
  Shape shape;        // one request's input
  bool ids = false;   // token ids (BERT) rather than floats

  // Request input number `index`: each index its own values (seeded by it), the same shape.
  nn::Input input(int index) const;
};

const std::vector<std::string>& workload_names();  // mlp, encoder, linear4096, conv1d, bert-minilm, linear2048
// Throws InvalidArgument for an unknown name.
Workload make_workload(const std::string& name, const Device& device, DType dtype);

}  // namespace streampool::bench
