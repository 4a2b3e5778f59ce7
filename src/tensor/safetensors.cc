#include "streampool/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>
#include <vector>

#include "streampool/error.h"

namespace streampool {

struct SafetensorsFile::Mapping {
  const unsigned char* data = nullptr;
  std::size_t size = 0;
  bool mapped = false;               // munmap at the end, else owned bytes
  std::vector<unsigned char> owned;  // from_bytes
  ~Mapping() {
    if (mapped && data) munmap(const_cast<unsigned char*>(data), size);
  }
};

namespace {

constexpr std::uint64_t kMaxHeader = 100ull << 20;  // as the reference implementation
constexpr int kMaxDepth = 16;                      // the format needs 3

struct CodeInfo {
  const char* code;
  std::size_t size;
  std::optional<DType> dtype;
};

const CodeInfo kCodes[] = {
    {"F64", 8, std::nullopt},          {"F32", 4, DType::float32},     {"F16", 2, DType::float16},
    {"BF16", 2, DType::bfloat16},      {"I64", 8, DType::int64},       {"I32", 4, DType::int32},
    {"I16", 2, std::nullopt},          {"I8", 1, std::nullopt},        {"U64", 8, std::nullopt},
    {"U32", 4, std::nullopt},          {"U16", 2, std::nullopt},       {"U8", 1, DType::uint8},
    {"BOOL", 1, DType::boolean},       {"F8_E4M3", 1, std::nullopt},   {"F8_E5M2", 1, std::nullopt},
};

const char* code_of(DType d) {
  switch (d) {
    case DType::float32: return "F32";
    case DType::float16: return "F16";
    case DType::bfloat16: return "BF16";
    case DType::int64: return "I64";
    case DType::int32: return "I32";
    case DType::uint8: return "U8";
    case DType::boolean: return "BOOL";
  }
  return "?";
}

[[noreturn]] void bad(const std::string& where, const std::string& why) {
  throw FormatError("malformed safetensors" + (where.empty() ? std::string() : " (" + where + ")") + ": " + why);
}

// Nesting depth of the JSON text, ignoring strings: rejects hostile nesting before parsing.
void check_depth(const char* p, std::size_t n, const std::string& where) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < n; ++i) {
    char c = p[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) bad(where, "header nests deeper than " + std::to_string(kMaxDepth) + " levels");
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

std::uint64_t get_u64(const nlohmann::json& v, const std::string& what, const std::string& where) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() < 0) bad(where, what + " is negative");
  bad(where, what + " is not a non-negative integer");
}

// Builds the header's JSON tree from SAX events and notes the first repeated top-level key.
// nlohmann's callback parser (parse with a callback) rescans the parent object at every
// object end, which made a header of N tensors cost O(N^2): 100,000 tensors took minutes.
struct HeaderBuilder {
  using json = nlohmann::json;
  explicit HeaderBuilder(json& root) : root(root) {}

  json& root;
  std::vector<json*> stack;             // open objects and arrays, innermost last
  json* slot = nullptr;                 // where the next value goes inside an object
  std::unordered_set<std::string> top;  // keys of the top-level object
  std::string duplicate;                // the first repeated top-level key
  std::string error;                    // the parser's message when it fails

  json* place(json&& v) {
    if (stack.empty()) {
      root = std::move(v);
      return &root;
    }
    json& parent = *stack.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    *slot = std::move(v);
    return slot;
  }
  bool value(json&& v) {
    place(std::move(v));
    return true;
  }
  bool null() { return value(json(nullptr)); }
  bool boolean(bool b) { return value(json(b)); }
  bool number_integer(json::number_integer_t v) { return value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return value(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return value(json(v)); }
  bool string(json::string_t& v) { return value(json(std::move(v))); }
  bool binary(json::binary_t& v) { return value(json::binary(std::move(v))); }
  bool start_object(std::size_t) {
    stack.push_back(place(json::object()));
    return true;
  }
  bool key(json::string_t& k) {
    if (stack.size() == 1 && !top.insert(k).second && duplicate.empty()) duplicate = k;
    slot = &(*stack.back())[k];
    return true;
  }
  bool end_object() {
    stack.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    stack.push_back(place(json::array()));
    return true;
  }
  bool end_array() {
    stack.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
    error = e.what();
    return false;
  }
};

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FormatError("cannot open safetensors file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError("'" + path + "' is not a regular file");
  }
  auto m = std::make_shared<Mapping>();
  m->size = static_cast<std::size_t>(st.st_size);
  if (m->size > 0) {
    void* p = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw FormatError("cannot map '" + path + "': " + std::strerror(errno));
    }
    m->data = static_cast<const unsigned char*>(p);
    m->mapped = true;
  }
  ::close(fd);
  return parse(std::move(m), path);
}

SafetensorsFile SafetensorsFile::from_bytes(const void* data, std::size_t size) {
  auto m = std::make_shared<Mapping>();
  m->owned.assign(static_cast<const unsigned char*>(data), static_cast<const unsigned char*>(data) + size);
  m->data = m->owned.data();
  m->size = size;
  return parse(std::move(m), "<memory>");
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<Mapping> m, std::string path) {
  const std::string where = path;  // a copy: `path` moves into the result below
  if (m->size < 8) bad(where, "file is " + std::to_string(m->size) + " bytes; it must start with an 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | m->data[i];
  if (n > m->size - 8) {
    bad(where, "header length " + std::to_string(n) + " runs past the end of the " + std::to_string(m->size) + "-byte file");
  }
  if (n > kMaxHeader) bad(where, "header length " + std::to_string(n) + " exceeds the 100 MiB limit");
  if (n < 2) bad(where, "header of " + std::to_string(n) + " bytes cannot hold a JSON object");
  const char* text = reinterpret_cast<const char*>(m->data + 8);
  check_depth(text, n, where);

  // Duplicate tensor names are invalid, but a JSON parser silently keeps the last: catch them
  // while building the tree (HeaderBuilder), in linear time.
  nlohmann::json header;
  HeaderBuilder builder(header);
  bool parsed = false;
  try {
    parsed = nlohmann::json::sax_parse(text, text + n, &builder);
  } catch (const nlohmann::json::exception& e) {
    bad(where, std::string("header is not valid JSON: ") + e.what());
  }
  if (!parsed) bad(where, "header is not valid JSON: " + builder.error);
  if (!builder.duplicate.empty()) bad(where, "tensor name '" + builder.duplicate + "' appears twice");
  if (!header.is_object()) bad(where, "header is not a JSON object");

  SafetensorsFile f;
  f.mapping_ = m;
  f.path_ = std::move(path);
  f.data_area_ = m->data + 8 + n;
  const std::uint64_t data_size = m->size - 8 - n;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad(where, "__metadata__ is not an object");
      for (auto mt = v.begin(); mt != v.end(); ++mt) {
        if (!mt.value().is_string()) bad(where, "__metadata__ value of '" + mt.key() + "' is not a string");
        f.metadata_[mt.key()] = mt.value().get<std::string>();
      }
      continue;
    }
    const std::string at = "tensor '" + name + "'";
    if (!v.is_object()) bad(where, at + " is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad(where, at + " has no dtype string");
    if (!v.contains("shape") || !v["shape"].is_array()) bad(where, at + " has no shape array");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
      bad(where, at + " has no data_offsets pair");
    }
    SafetensorsEntry e;
    e.name = name;
    e.dtype_code = v["dtype"].get<std::string>();
    const CodeInfo* info = nullptr;
    for (const CodeInfo& c : kCodes) {
      if (e.dtype_code == c.code) info = &c;
    }
    if (!info) bad(where, at + " has unknown dtype '" + e.dtype_code + "'");
    e.element_size = info->size;
    e.dtype = info->dtype;
    if (v["shape"].size() > 64) bad(where, at + " has more than 64 dimensions");
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : v["shape"]) {
      std::uint64_t s = get_u64(d, at + " shape entry", where);
      if (s > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) bad(where, at + " shape entry is too large");
      e.shape.push_back(static_cast<std::int64_t>(s));
      if (s != 0 && numel > std::numeric_limits<std::uint64_t>::max() / s) overflow = true;
      numel *= s;
    }
    e.begin = get_u64(v["data_offsets"][0], at + " data_offsets[0]", where);
    e.end = get_u64(v["data_offsets"][1], at + " data_offsets[1]", where);
    if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) overflow = false;  // zero elements
    if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / e.element_size) {
      bad(where, at + " shape " + shape_str(e.shape) + " overflows");
    }
    if (e.begin > e.end) bad(where, at + " data_offsets are reversed");
    if (e.end > data_size) {
      bad(where, at + " spans bytes " + std::to_string(e.begin) + ".." + std::to_string(e.end) + " but the data area has " +
                     std::to_string(data_size));
    }
    if (numel * e.element_size != e.end - e.begin) {
      bad(where, at + " shape " + shape_str(e.shape) + " of " + e.dtype_code + " needs " +
                     std::to_string(numel * e.element_size) + " bytes but its span has " + std::to_string(e.end - e.begin));
    }
    f.entries_.push_back(std::move(e));
  }
  std::sort(f.entries_.begin(), f.entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t covered = 0;
  for (const auto& e : f.entries_) {
    if (e.begin < covered) bad(where, "tensor '" + e.name + "' overlaps the tensor before it");
    if (e.begin > covered) bad(where, "bytes " + std::to_string(covered) + ".." + std::to_string(e.begin) + " of the data area belong to no tensor");
    covered = e.end;
  }
  if (covered != data_size) bad(where, "the last " + std::to_string(data_size - covered) + " bytes of the data area belong to no tensor");
  for (std::size_t i = 0; i < f.entries_.size(); ++i) f.index_[f.entries_[i].name] = i;
  return f;
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) != 0; }

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw InvalidArgument("no tensor named '" + name + "' in " + path_);
  return entries_[it->second];
}

const void* SafetensorsFile::raw(const SafetensorsEntry& e) const { return data_area_ + e.begin; }

Tensor SafetensorsFile::load(const std::string& name, const Device& device) const {
  const SafetensorsEntry& e = entry(name);
  if (!e.dtype) {
    throw FormatError("tensor '" + name + "' in " + path_ + " has dtype " + e.dtype_code + ", which streampool does not support");
  }
  return from_host(raw(e), static_cast<std::size_t>(e.end - e.begin), e.shape, *e.dtype, device);
}

std::map<std::string, Tensor> SafetensorsFile::load_all(const Device& device) const {
  std::map<std::string, Tensor> out;
  for (const auto& e : entries_) out.emplace(e.name, load(e.name, device));
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw InvalidArgument("save_safetensors: tensor '" + name + "' is undefined (writing '" + path + "')");
    if (name == "__metadata__" || !names.insert(name).second) {
      throw InvalidArgument("save_safetensors: tensor name '" + name + "' is reserved or repeated");
    }
    header[name] = {{"dtype", code_of(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data area 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error("save_safetensors: cannot write '" + path + "'");
  unsigned char len[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, t] : tensors) {
    std::vector<char> bytes(t.nbytes());
    t.copy_to_host(bytes.data(), bytes.size());
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  if (!out) throw Error("save_safetensors: writing '" + path + "' failed");
}

}  // namespace streampool
