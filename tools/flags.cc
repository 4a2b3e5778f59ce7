// Flag values shared by the subcommands.

#include "commands.h"
#include "streampool/error.h"

namespace streampool::tools {

DType parse_float_dtype(const std::string& flag, const std::string& text) {
  DType t = DType::float32;
  try {
    t = parse_dtype(text);
  } catch (const InvalidArgument&) {
    t = DType::int64;  // reported below, with the one message
  }
  if (!is_floating(t)) throw InvalidArgument(flag + ": '" + text + "' is not float32, float16 or bfloat16");
  return t;
}

}  // namespace streampool::tools
