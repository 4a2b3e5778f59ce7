#pragma once
// The CPU's single-precision GEMM, from oneDNN or OpenBLAS (STREAMPOOL_CPU_GEMM; README, "CPU
// GEMM"). One thread per call: intra-op parallelism is parallel.h's, which splits a GEMM into
// blocks of its own, so that a result never depends on how many threads were free. Internal.

namespace streampool::detail::cpu {

enum class GemmProvider { onednn, openblas };

// Row-major: C (m x n) = A (m x k) op(B) + beta C, op(B) = B^T (B stored n x k) when
// b_transposed, else B (k x n). Leading dimensions in elements.
void sgemm(bool b_transposed, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta, float* c,
           int ldc);
// The same through a named provider (tests compare the two); throws ConfigError for oneDNN
// in a build without it.
void sgemm_with(GemmProvider provider, bool b_transposed, int m, int n, int k, const float* a, int lda, const float* b,
                int ldb, float beta, float* c, int ldc);
// Builds oneDNN's kernels once and arms its exit handler (Note [oneDNN at exit]); called on the
// launching thread by every op that will run a CPU GEMM, before it enqueues the task.
void prepare_gemm();
// From now on every GEMM runs in OpenBLAS, and waits (at most 30 s) until no call is inside
// oneDNN (Note [oneDNN at exit]; streampool::begin_exit).
void close_onednn();
// What the build offers, and what OpenBLAS picked for this CPU ("Haswell", "SkylakeX",
// "Prescott" - its SSE3 fallback for CPUs that its release does not know).
bool onednn_built();
const char* openblas_core();

}  // namespace streampool::detail::cpu
