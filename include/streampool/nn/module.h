#pragma once
// Module: the base of the nn layer. A module is configured, loaded once (load_state_dict), and
// then immutable: forward() is const and safe from any number of threads at once, each on its
// own stream. Loading ends by waiting for the copies, so the weights are ready on every stream.
//
// Every module has one call form, forward(Input) -> Output, so that callers that treat modules
// alike (the golden runner, the bench, the graph cache, the BatchQueue) key and batch on one
// thing. A module given an Input field it does not take refuses it (InvalidArgument) rather
// than ignoring it.

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "streampool/tensor.h"
#include "streampool/export.h"

STREAMPOOL_API_BEGIN
namespace streampool::nn {

using StateDict = std::map<std::string, Tensor>;

struct Input {
  Input() = default;
  Input(Tensor x) : x(std::move(x)) {}  // NOLINT: implicit, so module(x) reads as in PyTorch

  Tensor x;                 // the input: floats (batch, ...), or token ids (batch, seq) for BertModel
  Tensor key_padding_mask;  // (batch, seq) bool or uint8, true = padded position (PyTorch's sense)
  Tensor attention_mask;    // (batch, seq), 1 = real token (Hugging Face's sense); BertModel only
  Tensor token_type_ids;    // (batch, seq) int; BertModel only
};

struct Output {
  Tensor y;       // the output (BertModel: last_hidden_state)
  Tensor pooled;  // BertModel's pooler output; undefined for the other modules
};

// How requests for a module batch along dimension 0 (the BatchQueue checks each request against
// it before batching, so a malformed request fails alone).
struct InputSpec {
  bool batchable = true;            // dimension 0 of x (and of the masks) is the batch; rows independent
  std::vector<std::int64_t> dims;   // x's shape after dimension 0, -1 = any size; empty: not known
  std::int64_t last_dim = 0;        // > 0 with dims empty: any rank >= 2, the last dimension this size
  std::int64_t seq_dim = 0;         // >= 1: the dimension of x whose length may differ between requests
  bool pad = false;                 // requests of different lengths batch padded, with a key_padding_mask
  bool ids = false;                 // x holds integer token ids (else floats of the module's dtype)
  std::int64_t max_len = 0;         // > 0: the longest length along seq_dim
  std::int64_t id_limit = 0;        // > 0: ids must lie in [0, id_limit)
  std::int64_t type_id_limit = 0;   // > 0: token_type_ids must lie in [0, type_id_limit)
};

class Module {
 public:
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Output forward(const Input& in) const = 0;
  Output operator()(const Input& in) const { return forward(in); }
  // What one request's input looks like (see InputSpec); the default knows nothing beyond
  // dimension 0 being the batch.
  virtual InputSpec input_spec() const { return {}; }

  // The class name, for messages ("Linear").
  std::string_view name() const { return name_; }
  // Every parameter with its PyTorch / Hugging Face name and expected shape.
  std::vector<std::pair<std::string, Shape>> parameters() const;

  // Loads every parameter from `state` onto `device` in `dtype` (float parameters are
  // converted). Missing, unexpected or wrongly shaped entries give one InvalidArgument listing
  // them all; nothing is changed then. Entries starting with one of `ignore` are not "unexpected".
  // Once loaded, the parameters are read-only: a second load throws InvalidArgument.
  void load_state_dict(const StateDict& state, const Device& device, DType dtype = DType::float32,
                       const std::vector<std::string>& ignore = {});
  void load_safetensors(const std::string& path, const Device& device, DType dtype = DType::float32);

  bool loaded() const { return loaded_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

 protected:
  explicit Module(const char* name) : name_(name) {}

  // In the constructor: declares a parameter and returns its handle for param().
  int register_parameter(std::string name, Shape shape);
  // In the constructor: a child (a member, or owned by this module) whose parameters are named
  // with `prefix` ("linear1.").
  void register_module(std::string prefix, Module& child);
  // The loaded value of a parameter (an undefined Tensor for the handle -1, an absent bias);
  // throws InvalidArgument naming the module before loading.
  const Tensor& param(int handle) const;

  // Called by load_state_dict on every module of the tree, children first, once the parameters
  // are set and before it returns (a throw leaves the module unloaded): builds read-only data
  // derived from them (Conv1d's folded weight on CUDA). Written then, never after.
  virtual void prepare(const Device& device) { (void)device; }

  // Which Input fields beyond x this module takes; the others must be undefined.
  enum Takes : unsigned { takes_x = 0, takes_key_padding_mask = 1, takes_bert_fields = 2 };
  void check_input(const Input& in, unsigned takes) const;
  // A child's forward on a plain tensor.
  static Tensor call(const Module& child, const Tensor& x) { return child.forward(Input(x)).y; }

 private:
  struct Param {
    std::string name;
    Shape shape;
    Tensor value;  // written only by load_state_dict
  };
  template <typename Self, typename F>
  static void walk(Self& self, const std::string& prefix, F&& f);
  static void prepare_tree(Module& m, const Device& device);

  const char* name_;
  std::vector<Param> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool loaded_ = false;
  Device device_;
  DType dtype_ = DType::float32;
};

}  // namespace streampool::nn
STREAMPOOL_API_END
