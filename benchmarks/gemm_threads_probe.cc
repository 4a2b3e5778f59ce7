// A probe of cuBLASLt's algorithms for one GEMM under T threads, each on its own stream, handle
// and workspace: which algorithm the heuristic picks for each workspace size, and how each
// candidate's requests/s (one GEMM + stream sync per request, as `streampool bench` direct mode)
// grows with threads. Bare cuBLASLt, no streampool: it separates the library's choice from our
// own per-call costs (issue "Direct mode at the measured limits", linear4096).
//
//   streampool_gemm_probe [m n k]      default 32 4096 4096 (linear4096), bias added
// Environment: PROBE_DUR seconds per point (0.3), PROBE_THREADS (1,2,4,8,16,31),
// PROBE_DTYPES (float16,float32), PROBE_MAX_ALGOS (12).
// One JSON object per line on stdout.

#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "threads_window.h"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: %s\n", what, cublasLtGetStatusString(s));
    std::exit(1);
  }
}
#define CK(x) check((x), #x)

std::vector<int> int_list(const char* env, const char* fallback) {
  const char* s = std::getenv(env);
  std::stringstream in(s && *s ? s : fallback);
  std::vector<int> v;
  for (std::string item; std::getline(in, item, ',');) v.push_back(std::atoi(item.c_str()));
  return v;
}

struct Gemm {
  int m, n, k;  // ours, row-major: y(m x n) = x(m x k) @ w(n x k)^T + bias(n)
  cudaDataType_t type;
  std::size_t es;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
};

void describe(Gemm& g, const void* bias) {
  CK(cublasLtMatmulDescCreate(&g.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CK(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CK(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  CK(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  CK(cublasLtMatmulDescSetAttribute(g.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  // Column-major: D(n x m) = W^T... as streampool's gemm does (its A is our weight).
  CK(cublasLtMatrixLayoutCreate(&g.a, g.type, g.k, g.n, g.k));
  CK(cublasLtMatrixLayoutCreate(&g.b, g.type, g.k, g.m, g.k));
  CK(cublasLtMatrixLayoutCreate(&g.c, g.type, g.n, g.m, g.n));
}

std::string config(const cublasLtMatmulAlgo_t& algo) {
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attr) {
    // The size must match the attribute's own (2, 4 or 8 bytes): try each.
    for (std::size_t size : {std::size_t(4), std::size_t(2), std::size_t(8)}) {
      std::uint64_t v = 0;
      std::size_t written = 0;
      if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, size, &written) == CUBLAS_STATUS_SUCCESS) {
        return static_cast<long long>(size == 4 ? static_cast<std::uint32_t>(v) : size == 2 ? static_cast<std::uint16_t>(v) : v);
      }
    }
    return -1LL;
  };
  std::ostringstream o;
  o << "\"algo_id\": " << get(CUBLASLT_ALGO_CONFIG_ID) << ", \"tile\": " << get(CUBLASLT_ALGO_CONFIG_TILE_ID)
    << ", \"stages\": " << get(CUBLASLT_ALGO_CONFIG_STAGES_ID) << ", \"splitk\": " << get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM)
    << ", \"reduction\": " << get(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME)
    << ", \"swizzle\": " << get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING)
    << ", \"custom\": " << get(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION)
    << ", \"cluster\": " << get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID);
  return o.str();
}

struct Candidate {
  cublasLtMatmulAlgo_t algo;
  std::size_t workspace;
  float waves;
  std::string picked_for;  // workspace sizes whose heuristic ranked it first
};

struct Buffers {
  void *w, *bias;
  std::vector<void*> x, y, ws;
  std::vector<cudaStream_t> streams;
  std::vector<cublasLtHandle_t> handles;
};

// Requests/s of T threads, each looping GEMM + sync on its own stream for `dur` seconds.
double throughput(const Gemm& g, const Candidate& cand, Buffers& buf, int threads, double dur) {
  std::atomic<bool> go{false}, stop{false};
  std::vector<long> counts(threads, 0);
  std::vector<std::thread> pool;
  const float alpha = 1.f, beta = 0.f;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        CK(cublasLtMatmul(buf.handles[t], g.op, &alpha, buf.w, g.a, buf.x[t], g.b, &beta, buf.y[t], g.c, buf.y[t], g.c,
                          &cand.algo, buf.ws[t], cand.workspace, buf.streams[t]));
        CK(cudaStreamSynchronize(buf.streams[t]));
        ++n;
      }
      counts[t] = n;
    });
  }
  return run_window(pool, go, stop, counts, dur);
}

// Median device time of one GEMM alone (events around 50 back-to-back calls, 5 repeats).
double device_us(const Gemm& g, const Candidate& cand, Buffers& buf) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const float alpha = 1.f, beta = 0.f;
  std::vector<float> times;
  for (int r = 0; r < 5; ++r) {
    CK(cudaEventRecord(e0, buf.streams[0]));
    for (int i = 0; i < 50; ++i) {
      CK(cublasLtMatmul(buf.handles[0], g.op, &alpha, buf.w, g.a, buf.x[0], g.b, &beta, buf.y[0], g.c, buf.y[0], g.c,
                        &cand.algo, buf.ws[0], cand.workspace, buf.streams[0]));
    }
    CK(cudaEventRecord(e1, buf.streams[0]));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    times.push_back(ms * 1000.f / 50.f);
  }
  std::sort(times.begin(), times.end());
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int m = argc > 3 ? std::atoi(argv[1]) : 32, n = argc > 3 ? std::atoi(argv[2]) : 4096,
            k = argc > 3 ? std::atoi(argv[3]) : 4096;
  const std::vector<int> thread_counts = int_list("PROBE_THREADS", "1,2,4,8,16,31");
  const double dur = std::getenv("PROBE_DUR") ? std::atof(std::getenv("PROBE_DUR")) : 0.3;
  const int max_algos = std::getenv("PROBE_MAX_ALGOS") ? std::atoi(std::getenv("PROBE_MAX_ALGOS")) : 12;
  const char* dts = std::getenv("PROBE_DTYPES");
  std::string dtypes = dts && *dts ? dts : "float16,float32";
  const int max_threads = *std::max_element(thread_counts.begin(), thread_counts.end());
  const std::size_t kMaxWs = 32u << 20;

  for (const std::string dt : {std::string("float16"), std::string("float32")}) {
    if (dtypes.find(dt) == std::string::npos) continue;
    Gemm g{m, n, k, dt == "float16" ? CUDA_R_16F : CUDA_R_32F, dt == "float16" ? 2u : 4u};
    Buffers buf;
    CK(cudaMalloc(&buf.w, static_cast<std::size_t>(n) * k * g.es));
    CK(cudaMalloc(&buf.bias, n * g.es));
    CK(cudaMemset(buf.w, 0x11, static_cast<std::size_t>(n) * k * g.es));  // small finite values in both dtypes
    CK(cudaMemset(buf.bias, 0x11, n * g.es));
    for (int t = 0; t < max_threads; ++t) {
      void *x, *y, *ws;
      CK(cudaMalloc(&x, static_cast<std::size_t>(m) * k * g.es));
      CK(cudaMemset(x, 0x22, static_cast<std::size_t>(m) * k * g.es));
      CK(cudaMalloc(&y, static_cast<std::size_t>(m) * n * g.es));
      CK(cudaMalloc(&ws, kMaxWs));
      cudaStream_t s;
      CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      cublasLtHandle_t h;
      CK(cublasLtCreate(&h));
      buf.x.push_back(x), buf.y.push_back(y), buf.ws.push_back(ws), buf.streams.push_back(s), buf.handles.push_back(h);
    }
    describe(g, buf.bias);

    std::vector<Candidate> cands;
    for (std::size_t ws : {kMaxWs, std::size_t(4u << 20), std::size_t(1u << 20), std::size_t(0)}) {
      cublasLtMatmulPreference_t pref;
      CK(cublasLtMatmulPreferenceCreate(&pref));
      CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
      std::vector<cublasLtMatmulHeuristicResult_t> res(max_algos);
      int found = 0;
      CK(cublasLtMatmulAlgoGetHeuristic(buf.handles[0], g.op, g.a, g.b, g.c, g.c, pref, max_algos, res.data(), &found));
      cublasLtMatmulPreferenceDestroy(pref);
      for (int i = 0; i < found; ++i) {
        auto same = std::find_if(cands.begin(), cands.end(), [&](const Candidate& c) {
          return std::memcmp(&c.algo, &res[i].algo, sizeof c.algo) == 0;
        });
        if (same == cands.end()) {
          cands.push_back({res[i].algo, std::max(res[i].workspaceSize, std::size_t(0)), res[i].wavesCount, ""});
          same = cands.end() - 1;
        }
        same->workspace = std::max(same->workspace, res[i].workspaceSize);
        if (i == 0) same->picked_for += (same->picked_for.empty() ? "" : ",") + std::to_string(ws >> 20) + "MiB";
      }
    }
    for (auto& c : cands) {
      const double us = device_us(g, c, buf);
      std::printf("{\"probe\": \"gemm\", \"dtype\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, %s, \"workspace\": %zu, "
                  "\"waves\": %.2f, \"first_for\": \"%s\", \"device_us\": %.2f, \"gbps\": %.0f",
                  dt.c_str(), m, n, k, config(c.algo).c_str(), c.workspace, c.waves, c.picked_for.c_str(), us,
                  (static_cast<double>(n) * k + static_cast<double>(m) * (k + n)) * g.es / us / 1e3);
      for (int t : thread_counts) std::printf(", \"rps_%d\": %.0f", t, throughput(g, c, buf, t, dur));
      std::printf("}\n");
      std::fflush(stdout);
    }
  }
  return 0;
}
