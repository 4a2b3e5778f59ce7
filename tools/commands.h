#pragma once
// The subcommands of the `streampool` tool, each registering itself on the CLI11 app.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "streampool/device.h"
#include "streampool/dtype.h"

namespace streampool::tools {

// The floating dtype a flag names (float32, float16, bfloat16 and their aliases); one
// InvalidArgument naming the flag for anything else (int64 included).
DType parse_float_dtype(const std::string& flag, const std::string& text);

// The non-empty items of a comma-separated flag value.
std::vector<std::string> split_list(const std::string& s);

// Each client thread of bench and soak holds its stream until it ends, so a policy other than
// `share` with more threads than pool streams would fail (error, wait:MS) or wait forever (wait):
// InvalidArgument naming the numbers and the settings.
void check_threads_fit_pool(int threads);

// The device a --device flag names, checked usable; empty: cuda:0 where a GPU is usable, else the
// CPU (saying so on stderr, prefixed with `command`).
Device pick_device(const std::string& flag_value, const char* command);

// Adds `diag`; the callback stores the exit status in `*exit_code`.
void add_diag_command(CLI::App& app, int* exit_code);
// Adds `inspect FILE`.
void add_inspect_command(CLI::App& app, int* exit_code);
// Adds `golden --dir DIR [--device] [--dtype]`.
void add_golden_command(CLI::App& app, int* exit_code);
// Adds `bench` (bench/WORKLOADS.md).
void add_bench_command(CLI::App& app, int* exit_code);
// Adds `soak` (mixed workloads and modes for minutes: failures, latency, memory growth).
void add_soak_command(CLI::App& app, int* exit_code);
// Adds `serve` (the Open Inference Protocol over HTTP); absent where Boost.Beast was not found.
void add_serve_command(CLI::App& app, int* exit_code);

}  // namespace streampool::tools
