// The Open Inference Protocol's REST request and response bodies (protocol.h).

#include "server/protocol.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "streampool/error.h"

namespace streampool::server {
namespace {

using nlohmann::json;

struct NameType {
  const char* name;
  DType dtype;
};
constexpr NameType kTypes[] = {{"FP32", DType::float32}, {"FP16", DType::float16}, {"BF16", DType::bfloat16},
                               {"INT64", DType::int64},  {"INT32", DType::int32},  {"UINT8", DType::uint8},
                               {"BOOL", DType::boolean}};

[[noreturn]] void bad(const std::string& what) { throw InvalidArgument("infer request: " + what); }

std::string where(std::size_t i, const std::string& name) {
  return "input " + std::to_string(i) + (name.empty() ? std::string() : " ('" + name + "')");
}

std::size_t element_count(const Shape& shape, std::size_t most, const std::string& who) {
  std::size_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) bad(who + ": shape has the negative dimension " + std::to_string(d));
    const auto u = static_cast<std::size_t>(d);
    if (u != 0 && n > most / u) bad(who + ": shape has more than " + std::to_string(most) + " elements");
    n *= u;
  }
  return n;
}

Shape read_shape(const json& t, const std::string& who) {
  auto it = t.find("shape");
  if (it == t.end() || !it->is_array()) bad(who + ": \"shape\" must be an array of integers");
  if (it->size() > 16) bad(who + ": shape has " + std::to_string(it->size()) + " dimensions (at most 16)");
  Shape shape;
  for (const json& d : *it) {
    if (!d.is_number_integer()) bad(who + ": \"shape\" must be an array of integers, not " + d.dump());
    shape.push_back(d.get<std::int64_t>());
  }
  return shape;
}

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// One JSON scalar as `dtype`'s bytes.
void append_scalar(std::string& out, const json& v, DType dtype, const std::string& who) {
  switch (dtype) {
    case DType::float32:
    case DType::float16:
    case DType::bfloat16: {
      if (!v.is_number()) bad(who + ": data holds " + v.dump() + ", not a number");
      const auto f = static_cast<float>(v.get<double>());
      if (dtype == DType::float32) put(out, f);
      else if (dtype == DType::float16) put(out, float_to_half(f));
      else put(out, float_to_bfloat16(f));
      return;
    }
    case DType::int64:
    case DType::int32:
    case DType::uint8: {
      if (!v.is_number_integer()) bad(who + ": data holds " + v.dump() + ", not an integer");
      const bool neg = v.is_number_unsigned() ? false : v.get<std::int64_t>() < 0;
      if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
        bad(who + ": " + v.dump() + " does not fit " + protocol_datatype(dtype));
      }
      const std::int64_t x = v.get<std::int64_t>();
      if (dtype == DType::int64) {
        put(out, x);
      } else if (dtype == DType::int32) {
        if (x < INT32_MIN || x > INT32_MAX) bad(who + ": " + v.dump() + " does not fit INT32");
        put(out, static_cast<std::int32_t>(x));
      } else {
        if (neg || x > 255) bad(who + ": " + v.dump() + " does not fit UINT8");
        put(out, static_cast<std::uint8_t>(x));
      }
      return;
    }
    case DType::boolean:
      if (!v.is_boolean()) bad(who + ": data holds " + v.dump() + ", not true or false");
      put(out, static_cast<std::uint8_t>(v.get<bool>() ? 1 : 0));
      return;
  }
  bad(who + ": unsupported datatype");
}

// "data": flat or nested arrays, row-major; walked without recursion (hostile nesting).
std::string read_json_data(const json& data, DType dtype, std::size_t count, const std::string& who) {
  std::string out;
  out.reserve(count * dtype_size(dtype));
  std::size_t seen = 0;
  std::vector<std::pair<const json*, std::size_t>> stack;
  auto visit = [&](const json& v) {
    if (v.is_array()) {
      if (stack.size() >= 64) bad(who + ": data is nested deeper than 64 arrays");
      stack.emplace_back(&v, 0);
      return;
    }
    if (++seen > count) bad(who + ": data has more than the shape's " + std::to_string(count) + " elements");
    append_scalar(out, v, dtype, who);
  };
  visit(data);
  while (!stack.empty()) {
    auto& [arr, i] = stack.back();
    if (i == arr->size()) {
      stack.pop_back();
      continue;
    }
    const json& v = (*arr)[i++];
    visit(v);
  }
  if (seen != count) {
    bad(who + ": data has " + std::to_string(seen) + " elements, the shape " + std::to_string(count));
  }
  return out;
}

std::optional<std::int64_t> int_param(const json& params, const char* key, const std::string& who) {
  auto it = params.find(key);
  if (it == params.end()) return std::nullopt;
  if (!it->is_number_integer()) bad(who + ": parameter \"" + key + "\" must be an integer, not " + it->dump());
  return it->get<std::int64_t>();
}

bool bool_param(const json& params, const char* key, const std::string& who) {
  auto it = params.find(key);
  if (it == params.end()) return false;
  if (!it->is_boolean()) bad(who + ": parameter \"" + key + "\" must be true or false, not " + it->dump());
  return it->get<bool>();
}

const json& object_or_empty(const json& j, const char* key, const std::string& who) {
  static const json empty = json::object();
  auto it = j.find(key);
  if (it == j.end()) return empty;
  if (!it->is_object()) bad(who + ": \"" + key + "\" must be an object");
  return *it;
}

std::string string_field(const json& j, const char* key, const std::string& who, bool required) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) bad(who + ": \"" + key + "\" is missing");
    return {};
  }
  if (!it->is_string()) bad(who + ": \"" + key + "\" must be a string");
  return it->get<std::string>();
}

}  // namespace

std::optional<DType> dtype_from_protocol(std::string_view datatype) {
  for (const NameType& t : kTypes) {
    if (datatype == t.name) return t.dtype;
  }
  return std::nullopt;
}

const char* protocol_datatype(DType dtype) {
  for (const NameType& t : kTypes) {
    if (t.dtype == dtype) return t.name;
  }
  throw InvalidArgument("protocol_datatype: no protocol name for this dtype");
}

InferRequest parse_infer_request(std::string_view body, std::optional<std::size_t> json_length,
                                 const ProtocolLimits& limits) {
  std::size_t jlen = body.size();
  if (json_length) {
    if (*json_length > body.size()) {
      bad("Inference-Header-Content-Length is " + std::to_string(*json_length) + " but the body has only " +
          std::to_string(body.size()) + " bytes");
    }
    jlen = *json_length;
  }
  json j;
  try {
    j = json::parse(body.substr(0, jlen));
  } catch (const json::exception& e) {
    bad(std::string("the body is not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) bad("the body must be a JSON object");
  InferRequest req;
  req.id = string_field(j, "id", "the request", false);
  const json& params = object_or_empty(j, "parameters", "the request");
  req.binary_data_output = bool_param(params, "binary_data_output", "the request");
  req.timeout_us = int_param(params, "timeout", "the request");
  if (req.timeout_us && *req.timeout_us < 0) bad("parameter \"timeout\" must not be negative");
  if (auto p = int_param(params, "priority", "the request")) {
    if (*p < INT32_MIN || *p > INT32_MAX) bad("parameter \"priority\" is out of range");
    req.priority = static_cast<int>(*p);
  }
  auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array() || inputs->empty()) bad("\"inputs\" must be a non-empty array");
  if (inputs->size() > limits.max_tensors) bad("more than " + std::to_string(limits.max_tensors) + " inputs");
  std::size_t binary_at = jlen;  // where the next binary input's bytes start
  for (std::size_t i = 0; i < inputs->size(); ++i) {
    const json& t = (*inputs)[i];
    if (!t.is_object()) bad(where(i, "") + " must be an object");
    RequestTensor rt;
    rt.name = string_field(t, "name", where(i, ""), true);
    const std::string who = where(i, rt.name);
    for (const RequestTensor& other : req.inputs) {
      if (other.name == rt.name) bad(who + " is given twice");
    }
    const std::string datatype = string_field(t, "datatype", who, true);
    const auto dt = dtype_from_protocol(datatype);
    if (!dt) bad(who + ": datatype \"" + datatype + "\" is not supported (FP32, FP16, BF16, INT64, INT32, UINT8, BOOL)");
    rt.dtype = *dt;
    rt.shape = read_shape(t, who);
    const std::size_t count = element_count(rt.shape, limits.max_elements, who);
    const std::size_t bytes = count * dtype_size(rt.dtype);
    const json& tp = object_or_empty(t, "parameters", who);
    const auto bsize = int_param(tp, "binary_data_size", who);
    const bool has_data = t.contains("data");
    if (bsize) {
      if (has_data) bad(who + ": has both \"data\" and binary_data_size");
      if (!json_length) bad(who + ": binary_data_size without an Inference-Header-Content-Length header");
      if (*bsize < 0 || static_cast<std::size_t>(*bsize) != bytes) {
        bad(who + ": binary_data_size is " + std::to_string(*bsize) + " but shape and datatype make " +
            std::to_string(bytes) + " bytes");
      }
      if (body.size() - binary_at < bytes) {
        bad(who + ": the binary data ends after " + std::to_string(body.size() - binary_at) + " of its " +
            std::to_string(bytes) + " bytes");
      }
      rt.data.assign(body.data() + binary_at, bytes);
      binary_at += bytes;
    } else {
      if (!has_data) bad(who + ": has no \"data\" (nor binary_data_size)");
      rt.data = read_json_data(t["data"], rt.dtype, count, who);
    }
    req.inputs.push_back(std::move(rt));
  }
  if (binary_at != body.size()) {
    bad(std::to_string(body.size() - binary_at) + " bytes of binary data follow the inputs' binary data");
  }
  if (auto outputs = j.find("outputs"); outputs != j.end()) {
    if (!outputs->is_array()) bad("\"outputs\" must be an array");
    if (outputs->size() > limits.max_tensors) bad("more than " + std::to_string(limits.max_tensors) + " outputs");
    for (std::size_t i = 0; i < outputs->size(); ++i) {
      const json& o = (*outputs)[i];
      const std::string who = "output " + std::to_string(i);
      if (!o.is_object()) bad(who + " must be an object");
      RequestedOutput ro;
      ro.name = string_field(o, "name", who, true);
      ro.binary = bool_param(object_or_empty(o, "parameters", who), "binary_data", who);
      req.outputs.push_back(std::move(ro));
    }
  }
  return req;
}

namespace {

json json_data(const ResponseTensor& t) {
  json arr = json::array();
  const std::size_t n = t.data.size() / dtype_size(t.dtype);
  const char* p = t.data.data();
  auto get = [&](auto tag, std::size_t i) {
    decltype(tag) v;
    std::memcpy(&v, p + i * sizeof(v), sizeof(v));
    return v;
  };
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::float32: arr.push_back(get(float{}, i)); break;
      case DType::float16: arr.push_back(half_to_float(get(std::uint16_t{}, i))); break;
      case DType::bfloat16: arr.push_back(bfloat16_to_float(get(std::uint16_t{}, i))); break;
      case DType::int64: arr.push_back(get(std::int64_t{}, i)); break;
      case DType::int32: arr.push_back(get(std::int32_t{}, i)); break;
      case DType::uint8: arr.push_back(get(std::uint8_t{}, i)); break;
      case DType::boolean: arr.push_back(get(std::uint8_t{}, i) != 0); break;
    }
  }
  return arr;
}

}  // namespace

std::string write_infer_response(const InferResponse& r, std::optional<std::size_t>* json_length) {
  json j;
  j["model_name"] = r.model_name;
  j["model_version"] = r.model_version;
  if (!r.id.empty()) j["id"] = r.id;
  j["outputs"] = json::array();
  std::string binary;
  for (const ResponseTensor& t : r.outputs) {
    json o;
    o["name"] = t.name;
    o["datatype"] = protocol_datatype(t.dtype);
    o["shape"] = t.shape;
    if (t.binary) {
      o["parameters"] = {{"binary_data_size", t.data.size()}};
      binary += t.data;
    } else {
      o["data"] = json_data(t);
    }
    j["outputs"].push_back(std::move(o));
  }
  // A float32 goes out as the double of the same value, printed so that it reads back exactly;
  // a non-finite output becomes null (JSON has no NaN): binary outputs carry those bits as is.
  std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (json_length) *json_length = binary.empty() ? std::nullopt : std::optional<std::size_t>(out.size());
  out += binary;
  return out;
}

std::string error_body(std::string_view message) {
  return json{{"error", std::string(message)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace streampool::server
