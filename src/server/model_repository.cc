// Reading a model repository (model_repository.h).

#include "server/model_repository.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "streampool/error.h"

namespace streampool::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void bad(const fs::path& file, const std::string& what) {
  throw ConfigError("model repository: " + file.string() + ": " + what);
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 128) return false;
  return std::all_of(n.begin(), n.end(), [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-' || c == '.'; }) &&
         n[0] != '.';
}

template <typename T>
T field(const json& j, const char* key, const fs::path& file, T fallback) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    bad(file, std::string("\"") + key + "\" has the wrong type (" + it->dump() + ")");
  }
}

ModelConfig read_one(const fs::path& dir) {
  const fs::path file = dir / "config.json";
  std::ifstream in(file);
  if (!in) bad(file, "cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::exception& e) {
    bad(file, std::string("is not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) bad(file, "must hold a JSON object");
  static const char* known[] = {"module", "config", "weights", "dtype", "device", "version", "max_batch_size",
                                "max_delay_us", "workers", "max_queue", "length_buckets", "graph", "timeout_us"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return it.key() == k; }) == std::end(known)) {
      bad(file, "unknown field \"" + it.key() + "\"");
    }
  }
  ModelConfig c;
  c.name = dir.filename().string();
  if (!valid_name(c.name)) bad(file, "the folder name is not a model name (letters, digits, '_', '-', '.')");
  c.dir = dir.string();
  c.module = field<std::string>(j, "module", file, "");
  if (c.module.empty()) bad(file, "\"module\" (a module kind: mlp, bert, ...) is missing");
  auto cfg = j.find("config");
  if (cfg == j.end() || !cfg->is_object()) bad(file, "\"config\" (the module's configuration object) is missing");
  c.module_config = cfg->dump();
  c.weights = field<std::string>(j, "weights", file, "");
  if (c.weights.empty()) bad(file, "\"weights\" (a safetensors file) is missing");
  if (fs::path(c.weights).is_relative()) c.weights = (dir / c.weights).string();
  try {
    c.dtype = parse_dtype(field<std::string>(j, "dtype", file, "float32"));
    if (!is_floating(c.dtype)) bad(file, "\"dtype\" must be float32, float16 or bfloat16");
    if (j.contains("device")) c.device = Device::parse(field<std::string>(j, "device", file, ""));
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    bad(file, e.what());
  }
  c.version = field<std::string>(j, "version", file, "1");
  if (!valid_name(c.version)) bad(file, "\"version\" is not a version name");
  BatchOptions& b = c.batching;
  b.name = c.name;
  b.max_batch_size = field<std::int64_t>(j, "max_batch_size", file, 64);
  if (b.max_batch_size < 1) bad(file, "\"max_batch_size\" must be at least 1");
  const auto delay = field<std::int64_t>(j, "max_delay_us", file, 0);
  const auto timeout = field<std::int64_t>(j, "timeout_us", file, 0);
  if (delay < 0 || timeout < 0) bad(file, "\"max_delay_us\" and \"timeout_us\" must not be negative");
  b.max_delay = std::chrono::microseconds(delay);
  b.default_timeout = std::chrono::microseconds(timeout);
  b.num_workers = field<int>(j, "workers", file, 1);
  if (b.num_workers < 1 || b.num_workers > 16) bad(file, "\"workers\" must be 1 to 16");
  const auto max_queue = field<std::int64_t>(j, "max_queue", file, 4096);
  if (max_queue < 0) bad(file, "\"max_queue\" must not be negative");
  b.max_queue = static_cast<std::size_t>(max_queue);
  b.full_policy = FullPolicy::reject;  // a full server answers 503 at once rather than holding a connection
  b.length_buckets = field<std::vector<std::int64_t>>(j, "length_buckets", file, {});
  b.graph = field<bool>(j, "graph", file, false);
  return c;
}

}  // namespace

std::vector<ModelConfig> read_model_repository(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw ConfigError("model repository: " + dir + " is not a directory");
  std::vector<fs::path> folders;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory()) folders.push_back(e.path());
  }
  if (ec) throw ConfigError("model repository: " + dir + " cannot be listed: " + ec.message());
  std::sort(folders.begin(), folders.end());
  std::vector<ModelConfig> out;
  for (const fs::path& f : folders) {
    if (!fs::exists(f / "config.json")) {
      std::cerr << "streampool serve: " << f.string() << " has no config.json: not a model, skipped\n";
      continue;
    }
    out.push_back(read_one(f));
  }
  if (out.empty()) throw ConfigError("model repository: " + dir + " holds no model (a folder with a config.json)");
  return out;
}

}  // namespace streampool::server
