// `streampool inspect FILE.safetensors`: each tensor (name, dtype, shape, bytes) and the
// metadata; on a malformed file, the reason, and exit status 1.

#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "streampool/error.h"
#include "streampool/safetensors.h"

namespace streampool::tools {

void add_inspect_command(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("inspect", "List the tensors and metadata of a safetensors file");
  auto path = std::make_shared<std::string>();
  cmd->add_option("file", *path, "A .safetensors file")->required();
  cmd->callback([=] {
    try {
      SafetensorsFile f = SafetensorsFile::open(*path);
      std::uint64_t total = 0;
      std::printf("%-48s %-6s %-22s %12s\n", "name", "dtype", "shape", "bytes");
      for (const auto& e : f.entries()) {
        std::printf("%-48s %-6s %-22s %12llu\n", e.name.c_str(), e.dtype_code.c_str(), shape_str(e.shape).c_str(),
                    static_cast<unsigned long long>(e.end - e.begin));
        total += e.end - e.begin;
      }
      std::printf("%zu tensors, %llu bytes of data\n", f.entries().size(), static_cast<unsigned long long>(total));
      if (!f.metadata().empty()) {
        std::printf("metadata:\n");
        for (const auto& [k, v] : f.metadata()) std::printf("  %s: %s\n", k.c_str(), v.c_str());
      }
      *exit_code = 0;
    } catch (const FormatError& e) {
      std::cerr << "streampool inspect: " << e.what() << "\n";
      *exit_code = 1;
    }
  });
}

}  // namespace streampool::tools
