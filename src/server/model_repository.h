#pragma once
// A model repository: one folder per model, named by the folder, each with a config.json
// (README "streampool serve" documents its fields) and its weights as safetensors.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "streampool/batch_queue.h"
#include "streampool/device.h"
#include "streampool/dtype.h"

namespace streampool::server {

struct ModelConfig {
  std::string name;            // the folder's name
  std::string version = "1";
  std::string dir;             // the model's folder
  std::string module;          // a kind of nn::make_module
  std::string module_config;   // its JSON configuration
  std::string weights;         // the safetensors file, absolute or relative to dir
  DType dtype = DType::float32;
  std::optional<Device> device;  // where it runs unless serve's --devices says otherwise
  BatchOptions batching;         // max_batch_size, max_delay_us, workers, max_queue, length_buckets, graph
};

// Reads DIR/*/config.json (folders without one are skipped with a line on stderr). Throws
// ConfigError naming the file and the field for a missing, mistyped or unknown field, and for a
// repository with no model or a folder name that is not a valid model name.
std::vector<ModelConfig> read_model_repository(const std::string& dir);

}  // namespace streampool::server
