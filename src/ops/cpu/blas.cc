// The CPU GEMM providers (blas.h). oneDNN is the default where it is built: it picks its
// kernels from the CPU's feature flags (AVX2, AVX-512), whereas Debian 12's OpenBLAS 0.3.21
// picks by CPU model and falls back to SSE3 ("Prescott") on models it does not know, Sapphire
// Rapids among them: 4-6x slower GEMMs there (issue 16; README, "CPU GEMM").

#include "ops/cpu/blas.h"

#include <cblas.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "streampool/error.h"
#include "streampool/settings.h"

#ifdef STREAMPOOL_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
extern "C" void omp_set_num_threads(int num_threads);
extern "C" int omp_get_max_threads(void);
#endif

extern "C" void openblas_set_num_threads(int num_threads);
extern "C" char* openblas_get_corename(void);

namespace streampool::detail::cpu {
namespace {

void openblas_sgemm(bool bt, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta, float* c,
                    int ldc) {
  // One BLAS thread per call, set once for the process (OpenBLAS's setting is global).
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
  cblas_sgemm(CblasRowMajor, CblasNoTrans, bt ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

#ifdef STREAMPOOL_HAVE_ONEDNN
// Note [oneDNN at exit]
// ~~~~~~~~~~~~~~~~~~~~~
// oneDNN builds its JIT kernels into static objects at their first use, so their destructors
// are registered with atexit then, and exit() runs them before any library destructor: before
// the CPU exit gate (Note [CPU exit gate]) stops the stream workers. A worker inside
// dnnl_sgemm at that moment crashed (the exit helper tests, most runs). So the first op that
// will run a GEMM builds the kernels of every shape class the GEMMs use (warm_up, ~45 ms), on
// the thread that launches it, and only then registers onednn_exit, which runs before those
// destructors: it sends every later GEMM to OpenBLAS
// (whose state lives until its own library destructor, after the gate) and waits for the calls
// inside oneDNN to return. Tasks go on running, so atexit handlers may still synchronize CPU
// streams. It is registered again after a thread's first call of each shape (256 times at
// most), after any kernel such a shape built. A thread still building them when exit() starts
// is covered by Note [Main thread exit] (streampool::begin_exit runs onednn_exit before every
// atexit handler). Shared state: g_onednn_closed, g_in_onednn (seq_cst).
std::atomic<bool> g_onednn_closed{false};
std::atomic<int> g_in_onednn{0};
std::atomic<int> g_exit_registrations{0};

void onednn_exit() {
  if (g_onednn_closed.exchange(true, std::memory_order_seq_cst)) return;
  // Long enough for any real GEMM; a call that never returns cannot hold exit forever.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (g_in_onednn.load(std::memory_order_seq_cst) > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// A call inside oneDNN, counted for onednn_exit.
struct InOneDnn {
  InOneDnn() { g_in_onednn.fetch_add(1, std::memory_order_seq_cst); }
  ~InOneDnn() { g_in_onednn.fetch_sub(1, std::memory_order_seq_cst); }
  InOneDnn(const InOneDnn&) = delete;
  InOneDnn& operator=(const InOneDnn&) = delete;
};

void note_shape(bool bt, int m, int n, int k, float beta);

void dnnl_call(bool bt, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta, float* c,
               int ldc) {
  const dnnl_status_t st = dnnl_sgemm('N', bt ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success) {
    throw Error("oneDNN sgemm failed (status " + std::to_string(static_cast<int>(st)) + ") for m=" + std::to_string(m) +
                " n=" + std::to_string(n) + " k=" + std::to_string(k));
  }
}

void warm_up() {
  const int shapes[][3] = {{1, 1, 1},   {1, 64, 64},     {64, 1, 64},   {2, 3, 5},     {16, 16, 16},
                           {64, 64, 64}, {300, 200, 100}, {8, 512, 256}, {256, 8, 256}, {128, 128, 32}};
  for (const auto& sh : shapes) {
    const int m = sh[0], n = sh[1], k = sh[2];
    // A (m x k), B (k x n, or n x k transposed: the same size), C (m x n), each its own size.
    std::vector<float> a(std::size_t(m) * k, 0.5f), b(std::size_t(k) * n, 0.25f), c(std::size_t(m) * n, 0.0f);
    for (bool bt : {false, true})
      for (float beta : {0.0f, 1.0f}) dnnl_call(bt, m, n, k, a.data(), k, b.data(), bt ? k : n, beta, c.data(), n);
  }
}

void onednn_sgemm(bool bt, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta, float* c,
                  int ldc) {
  // oneDNN (Debian's build runs on OpenMP) would open a team of every core's thread on each
  // calling thread; the OpenMP thread count is per thread, so each thread sets its own once.
  thread_local bool single = false;
  if (!single) {
    omp_set_num_threads(1);
    single = true;
  }
  prepare_gemm();  // done already on the thread that launched the op, where it matters
  {
    InOneDnn in;
    if (!g_onednn_closed.load(std::memory_order_seq_cst)) {
      dnnl_call(bt, m, n, k, a, lda, b, ldb, beta, c, ldc);
      note_shape(bt, m, n, k, beta);
      return;
    }
  }
  openblas_sgemm(bt, m, n, k, a, lda, b, ldb, beta, c, ldc);  // the process is exiting
}

// A shape this thread has not run before may have built a kernel (a static) of its own: the
// exit handler is registered again after it (Note [oneDNN at exit]).
void note_shape(bool bt, int m, int n, int k, float beta) {
  thread_local std::unordered_set<std::uint64_t> seen;
  if (g_exit_registrations.load(std::memory_order_relaxed) < 256) {
    const std::uint64_t key = (static_cast<std::uint64_t>(m) << 42) ^ (static_cast<std::uint64_t>(n) << 21) ^
                              static_cast<std::uint64_t>(k) ^ (bt ? 1ull << 63 : 0) ^ (beta != 0 ? 1ull << 62 : 0);
    if (seen.insert(key).second && g_exit_registrations.fetch_add(1, std::memory_order_relaxed) < 256) {
      std::atexit(&onednn_exit);
    }
  }
}
#endif

}  // namespace

void close_onednn() {
#ifdef STREAMPOOL_HAVE_ONEDNN
  onednn_exit();
#endif
}

void prepare_gemm() {
#ifdef STREAMPOOL_HAVE_ONEDNN
  static std::once_flag once;
  std::call_once(once, [] {
    // On the caller's thread, which may be an OpenMP user's: its thread count is given back.
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    struct Restore {
      int threads;
      ~Restore() { omp_set_num_threads(threads); }
    } restore{threads};
    InOneDnn in;  // onednn_exit waits for the warm-up too
    // Exiting (OpenBLAS from now on), or OpenBLAS chosen: nothing to build.
    if (g_onednn_closed.load(std::memory_order_seq_cst) || settings().cpu_gemm != CpuGemm::onednn) return;
    warm_up();
    std::atexit(&onednn_exit);
  });
#endif
}

bool onednn_built() {
#ifdef STREAMPOOL_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

const char* openblas_core() { return openblas_get_corename(); }

void sgemm_with(GemmProvider provider, bool bt, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                float beta, float* c, int ldc) {
  if (provider == GemmProvider::openblas) return openblas_sgemm(bt, m, n, k, a, lda, b, ldb, beta, c, ldc);
#ifdef STREAMPOOL_HAVE_ONEDNN
  onednn_sgemm(bt, m, n, k, a, lda, b, ldb, beta, c, ldc);
#else
  throw ConfigError("this build of streampool has no oneDNN (CMake option STREAMPOOL_ONEDNN; Debian's libdnnl-dev)");
#endif
}

void sgemm(bool bt, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta, float* c,
           int ldc) {
  const GemmProvider p = settings().cpu_gemm == CpuGemm::openblas ? GemmProvider::openblas : GemmProvider::onednn;
  sgemm_with(p, bt, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace streampool::detail::cpu
