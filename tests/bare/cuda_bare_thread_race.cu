// The bare reproduction (the MPS suite's run_metal_bare_thread_race.sh, for CUDA): N threads, each
// on its own raw CUDA stream with its own cuBLASLt handle, run kernels and GEMMs and check every
// result, with no streampool code at all. A fault seen here and in streampool is the driver's or
// the hardware's; one seen only in streampool is ours.
//   cuda_bare_thread_race [--threads=N] [--iterations=N] [--size=N]
// Exit 0 when every result matched and no CUDA call failed, 1 otherwise.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex print_mu;  // guards stderr lines from several threads
std::atomic<int> failures{0};

bool ok_cuda(cudaError_t st, const char* what, int t) {
  if (st == cudaSuccess) return true;
  std::lock_guard<std::mutex> g(print_mu);
  std::fprintf(stderr, "thread %d: %s: CUDA error %s\n", t, what, cudaGetErrorString(st));
  ++failures;
  return false;
}
bool ok_lt(cublasStatus_t st, const char* what, int t) {
  if (st == CUBLAS_STATUS_SUCCESS) return true;
  std::lock_guard<std::mutex> g(print_mu);
  std::fprintf(stderr, "thread %d: %s: cuBLASLt status %d\n", t, what, static_cast<int>(st));
  ++failures;
  return false;
}

// out[i] = in[i] * a + b, exact for the small integers used here.
__global__ void affine(const float* in, float* out, int n, float a, float b) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i] * a + b;
}

int arg(const char* s, const char* name, int fallback) {
  const std::size_t n = std::strlen(name);
  if (std::strncmp(s, name, n) != 0 || s[n] != '=') return fallback;
  const int v = std::atoi(s + n + 1);
  if (v < 1) {
    std::fprintf(stderr, "%s: '%s' is not a positive whole number\n", name, s + n + 1);
    std::exit(2);
  }
  return v;
}

// One thread: C = A(t) @ B then D = C * 2 + t, every iteration, checked against the host.
void worker(int t, int iterations, int n) {
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  // Small integers: every product and sum below 2^24 stays exact in float32.
  std::vector<float> A(nn), B(nn), want(nn);
  for (std::size_t i = 0; i < nn; ++i) {
    A[i] = static_cast<float>((i * 7 + static_cast<std::size_t>(t)) % 5);
    B[i] = static_cast<float>((i * 3 + 1) % 4);
  }
  // Row-major C[i][j] = sum_k A[i][k] B[k][j].
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      double acc = 0;
      for (int k = 0; k < n; ++k) acc += static_cast<double>(A[i * n + k]) * B[k * n + j];
      want[static_cast<std::size_t>(i) * n + j] = static_cast<float>(acc * 2 + t);
    }
  }
  cudaStream_t s = nullptr;
  cublasLtHandle_t lt = nullptr;
  float *dA = nullptr, *dB = nullptr, *dC = nullptr, *dD = nullptr;
  void* ws = nullptr;
  const std::size_t ws_bytes = 4 << 20;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  std::vector<float> got(nn);
  if (!ok_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate", t)) return;
  if (!ok_lt(cublasLtCreate(&lt), "cublasLtCreate", t)) return;
  bool ok = ok_cuda(cudaMalloc(&dA, nn * 4), "cudaMalloc", t) && ok_cuda(cudaMalloc(&dB, nn * 4), "cudaMalloc", t) &&
            ok_cuda(cudaMalloc(&dC, nn * 4), "cudaMalloc", t) && ok_cuda(cudaMalloc(&dD, nn * 4), "cudaMalloc", t) &&
            ok_cuda(cudaMalloc(&ws, ws_bytes), "cudaMalloc", t);
  // Row-major A @ B is column-major B^T... computed as C^T = B^T A^T: pass B first.
  ok = ok && ok_lt(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate", t) &&
       ok_lt(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, n, n, n), "LayoutCreate", t) &&
       ok_lt(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, n, n, n), "LayoutCreate", t) &&
       ok_lt(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, n, n, n), "LayoutCreate", t);
  ok = ok && ok_cuda(cudaMemcpyAsync(dA, A.data(), nn * 4, cudaMemcpyHostToDevice, s), "copy A", t) &&
       ok_cuda(cudaMemcpyAsync(dB, B.data(), nn * 4, cudaMemcpyHostToDevice, s), "copy B", t);
  const float alpha = 1, beta = 0;
  for (int it = 0; ok && it < iterations; ++it) {
    ok = ok_cuda(cudaMemsetAsync(dC, 0xff, nn * 4, s), "memset", t) &&
         ok_lt(cublasLtMatmul(lt, op, &alpha, dB, lb, dA, la, &beta, dC, lc, dC, lc, nullptr, ws, ws_bytes, s), "cublasLtMatmul", t);
    affine<<<static_cast<unsigned>((nn + 255) / 256), 256, 0, s>>>(dC, dD, static_cast<int>(nn), 2.0f, static_cast<float>(t));
    ok = ok && ok_cuda(cudaGetLastError(), "affine launch", t) &&
         ok_cuda(cudaMemcpyAsync(got.data(), dD, nn * 4, cudaMemcpyDeviceToHost, s), "copy back", t) &&
         ok_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize", t);
    if (!ok) break;
    std::size_t bad = 0;
    for (std::size_t i = 0; i < nn; ++i) bad += got[i] != want[i];
    if (bad) {
      std::lock_guard<std::mutex> g(print_mu);
      std::fprintf(stderr, "thread %d iteration %d: %zu of %zu results wrong\n", t, it, bad, nn);
      ++failures;
      ok = false;
    }
  }
  if (lc) cublasLtMatrixLayoutDestroy(lc);
  if (lb) cublasLtMatrixLayoutDestroy(lb);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (op) cublasLtMatmulDescDestroy(op);
  cudaFree(ws);
  cudaFree(dD);
  cudaFree(dC);
  cudaFree(dB);
  cudaFree(dA);
  cublasLtDestroy(lt);
  cudaStreamDestroy(s);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 8, iterations = 100, size = 256;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) threads = arg(argv[i], "--threads", threads);
    else if (std::strncmp(argv[i], "--iterations=", 13) == 0) iterations = arg(argv[i], "--iterations", iterations);
    else if (std::strncmp(argv[i], "--size=", 7) == 0) size = arg(argv[i], "--size", size);
    else {
      std::fprintf(stderr, "usage: cuda_bare_thread_race [--threads=N] [--iterations=N] [--size=N] (unknown '%s')\n", argv[i]);
      return 2;
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "cuda_bare_thread_race: no usable CUDA device\n");
    return 77;  // skipped
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t, iterations, size);
  for (auto& th : pool) th.join();
  std::printf("cuda_bare_thread_race: %d threads x %d iterations at %d^2: %d failures\n", threads, iterations, size,
              failures.load());
  return failures == 0 ? 0 : 1;
}
