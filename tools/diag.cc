// `streampool diag`: what this build and machine offer, the settings in effect, and a self-test.

#include <chrono>
#include <memory>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "streampool/streampool.h"

namespace streampool::tools {
namespace {

using nlohmann::json;

std::string cuda_version_str(int v) {
  if (v <= 0) return "none";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

double gib(std::size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

json device_report(const Device& d) {
  json j;
  j["device"] = d.str();
  try {
    DeviceProperties p = device_properties(d);
    j["name"] = p.name;
    j["total_memory_bytes"] = p.total_memory;
    j["free_memory_bytes"] = p.free_memory;
    j["multiprocessors"] = p.multiprocessors;
    if (d.kind == DeviceKind::cuda) {
      j["compute_capability"] = std::to_string(p.compute_capability_major) + "." +
                                std::to_string(p.compute_capability_minor);
    }
    auto t0 = std::chrono::steady_clock::now();
    self_test(d);
    j["self_test"] = "pass";
    j["self_test_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  } catch (const std::exception& e) {
    j["self_test"] = "fail";
    j["error"] = e.what();
  }
  return j;
}

// Exit status of --check: 0 a GPU is usable, 1 none is visible, 2 cannot tell.
int gpu_check(json& report) {
  if (!is_compiled(DeviceKind::cuda)) {
    report["check"] = "this build has no CUDA backend: no GPU usable";
    return 1;
  }
  int n = 0;
  try {
    n = device_count(DeviceKind::cuda);
  } catch (const std::exception& e) {
    report["check"] = std::string("cannot tell: ") + e.what();
    return 2;
  }
  if (n == 0) {
    report["check"] = "no CUDA device visible";
    return 1;
  }
  for (const auto& d : report["devices"]) {
    if (d["device"] == "cuda:0") {
      if (d.value("self_test", "") == "pass") {
        report["check"] = "cuda:0 usable";
        return 0;
      }
      report["check"] = "cannot tell: cuda:0 is visible but its self-test failed: " + d.value("error", std::string());
      return 2;
    }
  }
  return 2;
}

json collect() {
  json j;
  j["version"] = STREAMPOOL_VERSION;
  j["backends"] = json::array({"cpu"});
  if (is_compiled(DeviceKind::cuda)) j["backends"].push_back("cuda");
  BackendVersions v = backend_versions(DeviceKind::cuda);
  j["cuda_runtime"] = cuda_version_str(v.runtime);
  j["cuda_driver"] = cuda_version_str(v.driver);
  j["settings"] = json::array();
  try {
    for (const auto& s : settings_report()) {
      j["settings"].push_back({{"name", s.name}, {"value", s.value},
                               {"source", s.from_environment ? "environment" : "default"}, {"help", s.help}});
    }
  } catch (const std::exception& e) {
    j["settings_error"] = e.what();
  }
  j["devices"] = json::array();
  j["devices"].push_back(device_report(Device(DeviceKind::cpu)));
  if (is_compiled(DeviceKind::cuda)) {
    try {
      int n = device_count(DeviceKind::cuda);
      for (int i = 0; i < n; ++i) j["devices"].push_back(device_report(Device(DeviceKind::cuda, i)));
    } catch (const std::exception& e) {
      j["cuda_error"] = e.what();
    }
  }
  return j;
}

void print_text(const json& j) {
  std::ostringstream out;
  out << "streampool " << j["version"].get<std::string>() << "\n";
  out << "backends:      ";
  for (const auto& b : j["backends"]) out << b.get<std::string>() << " ";
  out << "\nCUDA runtime:  " << j["cuda_runtime"].get<std::string>()
      << "\nCUDA driver:   " << j["cuda_driver"].get<std::string>() << "\n";
  if (j.contains("cuda_error")) out << "CUDA error:    " << j["cuda_error"].get<std::string>() << "\n";
  out << "settings:\n";
  for (const auto& s : j["settings"]) {
    out << "  " << s["name"].get<std::string>() << "=" << s["value"].get<std::string>() << " ("
        << s["source"].get<std::string>() << ")  " << s["help"].get<std::string>() << "\n";
  }
  if (j.contains("settings_error")) out << "  ERROR: " << j["settings_error"].get<std::string>() << "\n";
  out << "devices:\n";
  for (const auto& d : j["devices"]) {
    out << "  " << d["device"].get<std::string>();
    if (d.contains("name")) {
      out << ": " << d["name"].get<std::string>();
      char mem[64];
      std::snprintf(mem, sizeof mem, ", %.1f GiB total, %.1f GiB free", gib(d["total_memory_bytes"]),
                    gib(d["free_memory_bytes"]));
      out << mem;
      if (d.contains("compute_capability")) out << ", compute capability " << d["compute_capability"].get<std::string>();
      out << ", " << d["multiprocessors"].get<int>() << (d["device"] == "cpu" ? " cores" : " multiprocessors");
    }
    out << "\n    self-test: " << d["self_test"].get<std::string>();
    if (d.contains("self_test_ms")) {
      char ms[32];
      std::snprintf(ms, sizeof ms, " (%.2f ms)", d["self_test_ms"].get<double>());
      out << ms;
    }
    if (d.contains("error")) out << ": " << d["error"].get<std::string>();
    out << "\n";
  }
  if (j.contains("check")) out << "check: " << j["check"].get<std::string>() << "\n";
  std::cout << out.str();
}

}  // namespace

void add_diag_command(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("diag", "Versions, devices, settings in effect, and a self-test of each device");
  auto as_json = std::make_shared<bool>(false);
  auto check = std::make_shared<bool>(false);
  cmd->add_flag("--json", *as_json, "Print the report as JSON");
  cmd->add_flag("--check", *check, "Exit 0 where a GPU is usable, 1 where none is visible, 2 where it cannot tell");
  cmd->callback([=] {
    json report = collect();
    int status = 0;
    int gpu = gpu_check(report);
    if (*check) status = gpu;
    bool failed = false;
    for (const auto& d : report["devices"]) failed |= d["self_test"] != "pass";
    if (!*check && (failed || report.contains("settings_error"))) status = 2;
    if (*as_json) {
      report["exit_status"] = status;
      std::cout << report.dump(2) << "\n";
    } else {
      print_text(report);
    }
    *exit_code = status;
  });
}

}  // namespace streampool::tools
