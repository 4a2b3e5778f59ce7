// streampool: the command-line tool (diag, ...).

#include <iostream>

#include "commands.h"
#include "streampool/error.h"
#include "streampool/version.h"

int main(int argc, char** argv) {
  CLI::App app{"streampool " STREAMPOOL_VERSION ": thread-safe parallel inference runtime"};
  app.set_version_flag("--version", STREAMPOOL_VERSION);
  app.require_subcommand(1);
  int exit_code = 0;
  streampool::tools::add_diag_command(app, &exit_code);
  streampool::tools::add_inspect_command(app, &exit_code);
  streampool::tools::add_golden_command(app, &exit_code);
  streampool::tools::add_bench_command(app, &exit_code);
  streampool::tools::add_soak_command(app, &exit_code);
#ifdef STREAMPOOL_HAS_SERVER
  streampool::tools::add_serve_command(app, &exit_code);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const streampool::Error& e) {
    std::cerr << "streampool: " << e.what() << "\n";
    return 2;
  }
  return exit_code;
}
