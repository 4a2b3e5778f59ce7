// `streampool golden --dir DIR [--device D] [--dtype T]`: one line per case, exit 1 on a failure.

#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "golden_runner.h"
#include "streampool/error.h"

namespace streampool::tools {

void add_golden_command(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("golden", "Check every reference case of a directory (manifest.json + safetensors)");
  auto dir = std::make_shared<std::string>();
  auto device = std::make_shared<std::string>("cpu");
  auto dtype = std::make_shared<std::string>("float32");
  cmd->add_option("--dir", *dir, "Directory with manifest.json and the case files")->required();
  cmd->add_option("--device", *device, "cpu, cuda or cuda:N (default cpu)");
  cmd->add_option("--dtype", *dtype, "float32, float16 or bfloat16 (default float32)");
  cmd->callback([=] {
    const Device d = Device::parse(*device);
    const DType t = parse_float_dtype("--dtype", *dtype);
    // An empty --dir would read "/manifest.json".
    if (dir->empty() || !std::filesystem::is_directory(*dir)) {
      throw InvalidArgument("--dir: '" + *dir + "' is not a directory (it should hold manifest.json and the case files)");
    }
    check_device(d);
    int failed = 0, total = 0;
    for (const auto& c : golden::load_manifest(*dir)) {
      golden::Result r = golden::run_case(*dir, c, d, t);
      ++total;
      failed += !r.pass;
      char ratio[32] = "    -";
      if (r.ratio_known && r.ratio > 0) std::snprintf(ratio, sizeof ratio, "%5.2fx", r.ratio);
      std::printf("%-28s %-10s %-9s max_abs %.3e  max_rel %.3e  %s torch  %s%s%s\n", r.name.c_str(), d.str().c_str(),
                  dtype->c_str(), r.max_abs, r.max_rel, ratio, r.pass ? "PASS" : "FAIL", r.detail.empty() ? "" : "  ",
                  r.detail.c_str());
    }
    std::printf("%d passed, %d failed\n", total - failed, failed);
    *exit_code = failed ? 1 : 0;
  });
}

}  // namespace streampool::tools
