// The CPU GEMM providers (blas.h). oneDNN is the default where it is built: it picks its
// kernels from the CPU's feature flags (AVX2, AVX-512), whereas Debian 12's OpenBLAS 0.3.21
// picks by CPU model and falls back to SSE3 ("Prescott") on models it does not know, Sapphire
// Rapids among them: 4-6x slower GEMMs there (issue 16; README, "CPU GEMM").

#include "ops/cpu/blas.h"

#include <cblas.h>

#include <mutex>

#include "streampool/error.h"
#include "streampool/settings.h"

#ifdef STREAMPOOL_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
extern "C" void omp_set_num_threads(int num_threads);
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
void onednn_sgemm(bool bt, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta, float* c,
                  int ldc) {
  // oneDNN (Debian's build runs on OpenMP) would open a team of every core's thread on each
  // calling thread; the OpenMP thread count is per thread, so each thread sets its own once.
  thread_local bool single = false;
  if (!single) {
    omp_set_num_threads(1);
    single = true;
  }
  const dnnl_status_t st = dnnl_sgemm('N', bt ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success) {
    throw Error("oneDNN sgemm failed (status " + std::to_string(static_cast<int>(st)) + ") for m=" + std::to_string(m) +
                " n=" + std::to_string(n) + " k=" + std::to_string(k));
  }
}
#endif

}  // namespace

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
