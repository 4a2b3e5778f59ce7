#include "ops/op_common.h"

#include <sstream>

namespace streampool::detail {

void op_error(const char* op, const std::string& why, std::initializer_list<const Tensor*> tensors) {
  std::ostringstream msg;
  msg << op << ": " << why;
  bool first = true;
  for (const Tensor* t : tensors) {
    if (!t) continue;
    msg << (first ? " (" : ", ") << t->str();
    first = false;
  }
  if (!first) msg << ")";
  throw InvalidArgument(msg.str());
}

void check_floating(const char* op, const Tensor& t, const char* name) {
  if (!t.defined()) op_error(op, std::string(name) + " is undefined (default-constructed or moved-from)", {});
  if (!is_floating(t.dtype())) {
    op_error(op, std::string(name) + " must be float32, float16 or bfloat16, not " + std::string(dtype_name(t.dtype())), {&t});
  }
}

void check_like(const char* op, const Tensor& ref, const Tensor& t, const char* name) {
  if (!t.defined()) op_error(op, std::string(name) + " is undefined", {&ref});
  if (t.device() != ref.device()) {
    op_error(op, std::string(name) + " is on " + t.device().str() + " but the input is on " + ref.device().str(), {&ref, &t});
  }
  if (t.dtype() != ref.dtype()) {
    op_error(op, std::string(name) + " is " + std::string(dtype_name(t.dtype())) + " but the input is " +
                     std::string(dtype_name(ref.dtype())),
             {&ref, &t});
  }
}

void check_dim(const char* op, const Tensor& t, const char* name, std::int64_t dims) {
  if (t.dim() != dims) op_error(op, std::string(name) + " must have " + std::to_string(dims) + " dimensions", {&t});
}

}  // namespace streampool::detail
