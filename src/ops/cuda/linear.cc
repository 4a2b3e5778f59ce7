// The CUDA GEMM: cuBLASLt, with the bias and ReLU / tanh-GELU fused into its epilogue.
//
// Note [BLAS handles and workspaces]
// A cuBLASLt handle is used by one thread at a time: each thread leases one per device from a
// pool at its first GEMM and returns it at thread exit (handles are never destroyed; Note
// [Process lifetime]). Workspaces are keyed by (handle, stream): the lease keeps one per stream
// it has run on, allocated from the caching allocator on that stream, so work on the stream is
// ordered with every use of it. Chosen algorithms are cached per problem, shared by all threads
// behind a reader-writer lock (written once per new problem), and each thread keeps its own
// copy of the map so that the lock is taken only at a thread's first use of a problem.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/exit_gate.h"
#include "core/runtime.h"
#include "memory/graph_arena.h"
#include "ops/gemm_workspace.h"
#include "ops/cuda/kernels.h"
#include "streampool/allocator.h"
#include "streampool/settings.h"

namespace streampool::detail::cuda {
namespace {

constexpr std::size_t kWorkspace = kGemmWorkspaceBytes;

[[noreturn]] void lt_fail(const char* call, cublasStatus_t st) {
  throw CudaError(std::string(call) + " failed: " + cublasLtGetStatusString(st), static_cast<int>(st));
}
#define CUDA_CHECK(expr) STREAMPOOL_CUDA_CHECK(expr, "the GEMM's algorithm timing")
#define LT_CHECK(expr)                                  \
  do {                                                  \
    cublasStatus_t st_ = (expr);                        \
    if (st_ != CUBLAS_STATUS_SUCCESS) lt_fail(#expr, st_); \
  } while (0)

class HandlePool {
 public:
  cublasLtHandle_t get() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      cublasLtHandle_t h = free_.back();
      free_.pop_back();
      return h;
    }
    cublasLtHandle_t h = nullptr;
    LT_CHECK(cublasLtCreate(&h));
    install_exit_gate_again();  // after cuBLASLt built its statics: Note [Exit while threads work]
    return h;
  }
  void put(cublasLtHandle_t h) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(h);
  }

 private:
  std::mutex mu_;  // guards free_
  std::vector<cublasLtHandle_t> free_;
};

HandlePool& handle_pool(int device) {
  static auto* pools = new PerDevice<HandlePool>;  // Note [Process lifetime]
  return pools->get(Device(DeviceKind::cuda, device), [] { return new HandlePool; });
}

struct Plan;

struct ThreadLease {
  struct PerDevice {
    cublasLtHandle_t handle = nullptr;
    std::unordered_map<std::uint32_t, DataPtr> workspaces;  // by stream id
    std::unordered_map<const Plan*, cublasLtMatmulDesc_t> bias_descs;  // this thread's copies
  };
  std::map<int, PerDevice> devices;
  ~ThreadLease() {
    for (auto& [dev, pd] : devices) {
      pd.workspaces.clear();  // back to the allocator, in each stream's order
      for (auto& [plan, desc] : pd.bias_descs) cublasLtMatmulDescDestroy(desc);
      if (pd.handle) handle_pool(dev).put(pd.handle);
    }
  }
};
thread_local ThreadLease tls_lease;

bool allow_tf32() { return settings().allow_tf32; }

cudaDataType_t cuda_type(DType dt) {
  switch (dt) {
    case DType::float32: return CUDA_R_32F;
    case DType::float16: return CUDA_R_16F;
    case DType::bfloat16: return CUDA_R_16BF;
    default: throw InvalidArgument("gemm: unsupported dtype " + std::string(dtype_name(dt)));
  }
}

struct Problem {
  int dev, dt, batch, m, n, k, lda, ldb, ldc, trans, epilogue, bias;
  std::int64_t sa, sb, sc;
  int align;  // log2 of each operand's alignment (A | B << 4 | C << 8), at most 256 bytes
  bool operator==(const Problem& o) const {
    return std::tie(dev, dt, batch, m, n, k, lda, ldb, ldc, trans, epilogue, bias, sa, sb, sc, align) ==
           std::tie(o.dev, o.dt, o.batch, o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.trans, o.epilogue, o.bias, o.sa, o.sb,
                    o.sc, o.align);
  }
};

// cuBLASLt assumes 256-byte aligned operands unless told otherwise, and refuses ("not
// supported") a pointer below what the chosen algorithm needs: a view one half-precision element
// into a tensor is 2-byte aligned. The plan is chosen for the operands' real alignment.
constexpr std::uint32_t kFullAlign = 256;
std::uint32_t alignment(const void* p, std::int64_t batch_stride_bytes) {
  std::uint64_t v = reinterpret_cast<std::uintptr_t>(p) | kFullAlign;
  if (batch_stride_bytes) v |= static_cast<std::uint64_t>(batch_stride_bytes);
  return static_cast<std::uint32_t>(v & (~v + 1));  // lowest set bit, at most 256
}
int log2_of(std::uint32_t a) { return 31 - __builtin_clz(a); }
struct ProblemHash {
  std::size_t operator()(const Problem& p) const {
    std::size_t h = 0;
    for (std::int64_t v : {std::int64_t(p.dev), std::int64_t(p.dt), std::int64_t(p.batch), std::int64_t(p.m),
                           std::int64_t(p.n), std::int64_t(p.k), std::int64_t(p.lda), std::int64_t(p.ldb),
                           std::int64_t(p.ldc), std::int64_t(p.trans), std::int64_t(p.epilogue), std::int64_t(p.bias),
                           p.sa, p.sb, p.sc, std::int64_t(p.align)}) {
      h = h * 1000003u ^ std::hash<std::int64_t>{}(v);
    }
    return h;
  }
};

// The descriptors and the chosen algorithm of one problem; immutable once built.
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::shared_mutex plans_mu;  // guards plans (Note [BLAS handles and workspaces])
std::unordered_map<Problem, Plan*, ProblemHash>* plans = new std::unordered_map<Problem, Plan*, ProblemHash>;

cublasLtMatrixLayout_t layout(cudaDataType_t t, int rows, int cols, int ld, int batch, std::int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  LT_CHECK(cublasLtMatrixLayoutCreate(&l, t, rows, cols, ld));
  if (batch > 1) {
    LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch));
    LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return l;
}

// What one call multiplies: cuBLASLt's operands (Row-major C = A @ op(B) is column-major
// C^T = op(B)^T @ A^T: cuBLASLt's "A" is our B, its "B" our A), the workspace and the stream.
struct Operands {
  const void* lt_a;
  const void* lt_b;
  void* c;
  void* workspace;
  cudaStream_t stream;
};

// Note [Timed GEMM algorithms]
// cuBLASLt's heuristic ranks algorithms for the workspace it is offered, and its first choice for
// our 32 MiB is not always the fastest. linear4096 in float16 (32 x 4096 x 4096) gets a split-K
// algorithm: two kernels, 14.4 us back to back, 109k GEMMs/s over 8 threads. The algorithm it
// ranks first for 1 MiB is one kernel: 10.1 us and 139k GEMMs/s (H200, CUDA 13;
// benchmarks/gemm_threads_probe.cc). So a new half-precision problem's plan takes the
// heuristic's first choice for each of 32 MiB, 4 MiB, 1 MiB and no workspace, times each
// distinct one back to back on the caller's stream (device events, the fastest of two rounds),
// and keeps the fastest. The trial runs write only the GEMM's own output, which the real call
// then writes again. float32 keeps the 32 MiB choice: it was the fastest by 2x for linear4096,
// and a timed choice put the float32 MultiheadAttention golden case at 2.3x PyTorch's own error
// (above the 1.5x the golden cases allow; every float16 and bfloat16 case stayed within it).
// Inside a stream capture nothing may be synchronized: there, and with STREAMPOOL_GEMM_TUNING=0,
// the plan keeps the 32 MiB choice untimed.
bool timing_allowed(cudaDataType_t t, cudaStream_t stream) {
  if (t == CUDA_R_32F || !settings().gemm_tuning || gemm_workspace_override()) return false;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  return cudaStreamIsCapturing(stream, &status) == cudaSuccess && status == cudaStreamCaptureStatusNone;
}

// Device microseconds of one call with `algo` (the fastest of two rounds of four, after one warm-up).
float time_algo(cublasLtHandle_t handle, const Plan& p, const cublasLtMatmulAlgo_t& algo, const Operands& ops) {
  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  const float alpha = 1.0f, beta = 0.0f;
  float best = -1.f;
  try {
    for (int round = 0; round < 3; ++round) {
      const int calls = round == 0 ? 1 : 4;
      CUDA_CHECK(cudaEventRecord(start, ops.stream));
      for (int i = 0; i < calls; ++i) {
        LT_CHECK(cublasLtMatmul(handle, p.op, &alpha, ops.lt_a, p.a, ops.lt_b, p.b, &beta, ops.c, p.c, ops.c, p.c, &algo,
                                ops.workspace, kWorkspace, ops.stream));
      }
      CUDA_CHECK(cudaEventRecord(stop, ops.stream));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      if (round > 0 && (best < 0 || ms * 1000.f / calls < best)) best = ms * 1000.f / calls;
    }
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

// A new problem's plan: descriptors, then the algorithm (Note [Timed GEMM algorithms]).
Plan* build_plan(const Problem& key, cublasLtHandle_t handle, cudaDataType_t t, const GemmArgs& g, const void* bias,
                 cublasLtEpilogue_t epilogue, std::uint32_t al_a, std::uint32_t al_b, std::uint32_t al_c,
                 const Operands& ops) {
  const int batch = g.batch, m = g.m, n = g.n, k = g.k;
  auto* p = new Plan;  // never destroyed: shared by every thread for the process lifetime
  const cublasComputeType_t compute = t == CUDA_R_32F && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  LT_CHECK(cublasLtMatmulDescCreate(&p->op, compute, CUDA_R_32F));
  cublasOperation_t ta = g.b_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
  LT_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  LT_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  LT_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  // Our B, seen column-major: (k x n) when transposed (stored n x k row-major), else (n x k).
  p->a = g.b_transposed ? layout(t, k, n, g.ldb, batch, g.stride_b) : layout(t, n, k, g.ldb, batch, g.stride_b);
  p->b = layout(t, k, m, g.lda, batch, g.stride_a);
  p->c = layout(t, n, m, g.ldc, batch, g.stride_c);
  if (key.bias) {
    // The heuristic must know a bias pointer will be set; this call's (16-byte aligned) will do.
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  }
  // The heuristic's first choice for each workspace size, distinct ones only.
  std::vector<cublasLtMatmulAlgo_t> candidates;
  const bool timed = timing_allowed(t, ops.stream);
  for (std::size_t wsize : {kWorkspace, std::size_t(4) << 20, std::size_t(1) << 20, std::size_t(0)}) {
    cublasLtMatmulPreference_t pref = nullptr;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsize, sizeof wsize));
    if (al_a < kFullAlign || al_b < kFullAlign || al_c < kFullAlign) {
      LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
      LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
      LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
      LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, p->op, p->a, p->b, p->c, p->c, pref, 1, &result, &found);
    install_exit_gate_again();  // its first calls build statics of cuBLASLt's: Note [Exit while threads work]
    cublasLtMatmulPreferenceDestroy(pref);
    if (wsize == kWorkspace) {  // the full workspace must have an algorithm; smaller ones may not
      if (st != CUBLAS_STATUS_SUCCESS) lt_fail("cublasLtMatmulAlgoGetHeuristic", st);
      if (found == 0) throw CudaError("cuBLASLt found no algorithm for it", 0);
    } else if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      continue;
    }
    const bool seen = std::any_of(candidates.begin(), candidates.end(), [&](const cublasLtMatmulAlgo_t& c) {
      return std::memcmp(&c, &result.algo, sizeof c) == 0;
    });
    if (!seen) candidates.push_back(result.algo);
    if (!timed) break;
  }
  p->algo = candidates.front();
  if (timed && candidates.size() > 1) {
    float best = -1.f;
    for (const auto& algo : candidates) {
      const float us = time_algo(handle, *p, algo, ops);
      if (best < 0 || us < best) best = us, p->algo = algo;
    }
  }
  return p;
}

// The plan of `key`: this thread's view of the cache, then the shared cache, else built here.
Plan* plan_for(const Problem& key, cublasLtHandle_t handle, cudaDataType_t t, const GemmArgs& g, const void* bias,
               cublasLtEpilogue_t epilogue, std::uint32_t al_a, std::uint32_t al_b, std::uint32_t al_c,
               const Operands& ops) {
  // No shared cache line is written on the hot path: each thread keeps its own map of plans.
  thread_local std::unordered_map<Problem, Plan*, ProblemHash> tls_plans;
  if (auto mine = tls_plans.find(key); mine != tls_plans.end()) return mine->second;
  Plan* plan = nullptr;
  {
    std::shared_lock<std::shared_mutex> lock(plans_mu);
    auto it = plans->find(key);
    if (it != plans->end()) plan = it->second;
  }
  if (!plan) {
    Plan* p = build_plan(key, handle, t, g, bias, epilogue, al_a, al_b, al_c, ops);
    std::unique_lock<std::shared_mutex> lock(plans_mu);
    auto [it, inserted] = plans->emplace(key, p);
    plan = it->second;  // a racing thread's plan is as good; ours is dropped (leaked, small)
  }
  tls_plans.emplace(key, plan);
  return plan;
}

void gemm_impl(const Device& device, DType dt, const GemmArgs& g, void* stream) {
  const int batch = g.batch, m = g.m, n = g.n, k = g.k, lda = g.lda, ldb = g.ldb, ldc = g.ldc;
  const std::int64_t stride_a = g.stride_a, stride_b = g.stride_b, stride_c = g.stride_c;
  const void *a = g.a, *b = g.b, *bias = g.bias;
  void* c = g.c;
  const Activation act = g.act;
  if (g.row_bias) {
    // cuBLASLt's bias epilogue runs along our C's columns only (a Linear's bias): a bias per row
    // (a convolution's, per output channel) and the activation after it take one pass of ours.
    GemmArgs plain = g;
    plain.row_bias = nullptr;
    plain.bias = nullptr;
    plain.act = Activation::none;
    gemm_impl(device, dt, plain, stream);
    bias_activation(c, dt, static_cast<std::int64_t>(batch) * m, n, g.row_bias, act, stream, m);
    return;
  }
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  Activation after = act;  // what still needs a pass of our own after the GEMM
  const void* bias_after = nullptr;
  if (bias) {
    epilogue = CUBLASLT_EPILOGUE_BIAS;
    if (act == Activation::relu) epilogue = CUBLASLT_EPILOGUE_RELU_BIAS, after = Activation::none;
    else if (act == Activation::gelu_tanh) epilogue = CUBLASLT_EPILOGUE_GELU_BIAS, after = Activation::none;
  } else if (act == Activation::relu) {
    epilogue = CUBLASLT_EPILOGUE_RELU, after = Activation::none;
  } else if (act == Activation::gelu_tanh) {
    epilogue = CUBLASLT_EPILOGUE_GELU, after = Activation::none;
  }
  if (after != Activation::none && bias) {
    // cuBLASLt's GELU is the tanh form: exact (erf) GELU and the others get our fused pass.
    epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    bias_after = bias;
  }
  if (bias && !bias_after && reinterpret_cast<std::uintptr_t>(bias) % 16 != 0) {
    // The bias epilogue reads the vector in 16-byte pieces: a misaligned one (a view) gets our pass.
    epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    after = act;
    bias_after = bias;
  }
  const cudaDataType_t t = cuda_type(dt);
  Problem key{device.index, static_cast<int>(dt), batch, m, n, k, lda, ldb, ldc, g.b_transposed ? 1 : 0,
              static_cast<int>(epilogue), bias && !bias_after ? 1 : 0, stride_a, stride_b, stride_c, 0};
  // cuBLASLt's A is our b, its B our a (see Operands); D is C.
  const std::int64_t es = static_cast<std::int64_t>(dtype_size(dt));
  const std::uint32_t al_a = alignment(b, batch > 1 ? stride_b * es : 0), al_b = alignment(a, batch > 1 ? stride_a * es : 0),
                      al_c = alignment(c, batch > 1 ? stride_c * es : 0);
  key.align = log2_of(al_a) | log2_of(al_b) << 4 | log2_of(al_c) << 8;

  ThreadLease::PerDevice& lease = tls_lease.devices[device.index];
  if (!lease.handle) lease.handle = handle_pool(device.index).get();
  void* workspace = gemm_workspace_override();  // a capture's own (ops/gemm_workspace.h)
  if (!workspace) {
    const std::uint32_t sid = current_stream(device).id();
    auto ws = lease.workspaces.find(sid);
    if (ws == lease.workspaces.end()) {
      Stream s(device, sid);
      ArenaScope outlives_graphs(nullptr, device);  // the lease keeps it: never from a graph's arena
      ws = lease.workspaces.emplace(sid, allocate(device, kWorkspace, &s)).first;
    }
    workspace = ws->second.get();
  }
  const Operands ops{b, a, c, workspace, static_cast<cudaStream_t>(stream)};
  Plan* plan = plan_for(key, lease.handle, t, g, bias, epilogue, al_a, al_b, al_c, ops);
  // The bias pointer differs per call and the plan's descriptor is shared by every thread: each
  // thread keeps its own copy of a biased plan's descriptor and sets the pointer there.
  cublasLtMatmulDesc_t op = plan->op;
  if (key.bias) {
    cublasLtMatmulDesc_t& mine = lease.bias_descs[plan];
    if (!mine) {
      cublasComputeType_t compute;
      cudaDataType_t scale;
      std::size_t written = 0;
      LT_CHECK(cublasLtMatmulDescGetAttribute(plan->op, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, &compute, sizeof compute,
                                              &written));
      LT_CHECK(cublasLtMatmulDescGetAttribute(plan->op, CUBLASLT_MATMUL_DESC_SCALE_TYPE, &scale, sizeof scale, &written));
      LT_CHECK(cublasLtMatmulDescCreate(&mine, compute, scale));
      cublasOperation_t ta = g.b_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
      LT_CHECK(cublasLtMatmulDescSetAttribute(mine, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      LT_CHECK(cublasLtMatmulDescSetAttribute(mine, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      LT_CHECK(cublasLtMatmulDescSetAttribute(mine, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    }
    LT_CHECK(cublasLtMatmulDescSetAttribute(mine, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    op = mine;
  }
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st = cublasLtMatmul(lease.handle, op, &alpha, b, plan->a, a, plan->b, &beta, c, plan->c, c, plan->c,
                                     &plan->algo, workspace, kWorkspace, static_cast<cudaStream_t>(stream));
  if (st != CUBLAS_STATUS_SUCCESS) lt_fail("cublasLtMatmul", st);
  if (after != Activation::none || bias_after) {
    bias_activation(c, dt, static_cast<std::int64_t>(batch) * m, n, bias_after, after, stream);
  }
}
}  // namespace

void gemm(const Device& device, DType dt, const GemmArgs& g, void* stream) {
  try {
    gemm_impl(device, dt, g, stream);
  } catch (const CudaError& e) {
    // Name which GEMM failed: the op that asked (the stream's latest op), shapes, dtype, device.
    const char* op = current_impl(device).last_op.load(std::memory_order_relaxed);
    std::string what = std::string(op ? op : "GEMM") + ": " + (g.batch > 1 ? std::to_string(g.batch) + " x " : "") +
                       "(" + std::to_string(g.m) + " x " + std::to_string(g.k) + ") @ (" + std::to_string(g.k) + " x " +
                       std::to_string(g.n) + ")" + (g.b_transposed ? " (B transposed)" : "") + (g.bias ? " + bias" : "") +
                       " " + std::string(dtype_name(dt)) + " on " + device.str() + ": " + e.what();
    throw CudaError(what, e.code());
  }
}

}  // namespace streampool::detail::cuda
