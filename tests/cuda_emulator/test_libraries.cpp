// The CUDA emulator's stand-ins for cuBLAS, cuDNN, CUB and NCCL, checked against naive float64
// references written here from the libraries' documented definitions (not from cuface's CPU
// kernels), on small odd shapes, through the emulated device's memory and streams.
//
// Error bounds: a float32 sum of n products in any order is within gamma(n) = n u / (1 - n u),
// u = 2^-24, times the sum of the terms' magnitudes (Higham 3.1); a bf16 result adds its own rounding,
// at most 2^-8 relative. A wrong index, transpose or leading dimension breaks these bounds by far.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <gtest/gtest.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

// ---- device memory ----------------------------------------------------------------------------------

template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    EXPECT_EQ(cudaMalloc(&data_, std::max<size_t>(count, 1) * sizeof(T)), cudaSuccess);
  }
  explicit DeviceArray(const std::vector<T>& values) : DeviceArray(values.size()) { upload(values); }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return static_cast<T*>(data_); }
  size_t bytes() const { return count_ * sizeof(T); }
  void upload(const std::vector<T>& values) {
    ASSERT_EQ(values.size(), count_);
    ASSERT_EQ(cudaMemcpy(data_, values.data(), bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  // Waits for all queued work first: the libraries queue theirs on streams of their own.
  std::vector<T> download() const {
    std::vector<T> values(count_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(values.data(), data_, bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return values;
  }

 private:
  void* data_ = nullptr;
  size_t count_;
};

// ---- numbers ----------------------------------------------------------------------------------------

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

double gamma_bound(int terms) {
  const double nu = terms * std::ldexp(1.0, -24);
  return nu / (1.0 - nu);
}

// x rounded to `bits` significant bits: to nearest, ties to even (bf16) or away from zero (TF32).
double round_significand(double x, int bits, bool ties_away) {
  if (x == 0 || !std::isfinite(x)) return x;
  int exponent;
  std::frexp(x, &exponent);  // |x| in [2^(exponent-1), 2^exponent)
  const double unit = std::ldexp(1.0, exponent - bits);
  return (ties_away ? std::round(x / unit) : std::nearbyint(x / unit)) * unit;
}
double to_bf16_value(double x) { return round_significand(x, 8, false); }
double to_tf32_value(double x) { return round_significand(x, 11, true); }

uint16_t bf16_bits(double representable) {
  const float value = float(representable);
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  EXPECT_EQ(bits & 0xffffu, 0u) << representable << " is not a bf16 value";
  return uint16_t(bits >> 16);
}
double bf16_value(uint16_t bits) {
  const uint32_t wide = uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

std::vector<double> random_values(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<double> values(count);
  for (double& v : values) v = double(float(uniform(generator)));  // exactly representable in f32
  return values;
}

std::vector<float> as_floats(const std::vector<double>& values) { return {values.begin(), values.end()}; }
template <class T>
std::vector<T> zeros(size_t count) {
  return std::vector<T>(count);
}
std::vector<uint16_t> as_bf16(const std::vector<double>& values) {
  std::vector<uint16_t> bits;
  for (double v : values) bits.push_back(bf16_bits(v));
  return bits;
}

// A reference value and the sum of the magnitudes of the terms that make it up.
struct Reference {
  std::vector<double> value, magnitude;
  explicit Reference(size_t count) : value(count, 0.0), magnitude(count, 0.0) {}
  void add(size_t at, double term) {
    value[at] += term;
    magnitude[at] += std::abs(term);
  }
};

// Every element of `got` within gamma(terms) * magnitude of the reference, plus `relative` * |value|
// for a rounded (bf16) result.
void expect_within(const std::vector<double>& got, const Reference& ref, int terms, double relative,
                   const std::string& what) {
  ASSERT_EQ(got.size(), ref.value.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double allowed = gamma_bound(terms) * ref.magnitude[i] + relative * std::abs(ref.value[i]) + 1e-30;
    ASSERT_LE(std::abs(got[i] - ref.value[i]), allowed)
        << what << ": element " << i << " is " << got[i] << ", reference " << ref.value[i];
  }
}

std::vector<double> as_doubles(const std::vector<float>& values) { return {values.begin(), values.end()}; }
std::vector<double> bf16_as_doubles(const std::vector<uint16_t>& bits) {
  std::vector<double> values;
  for (uint16_t b : bits) values.push_back(bf16_value(b));
  return values;
}

// ---- cuBLAS -----------------------------------------------------------------------------------------

class CublasHandle {
 public:
  CublasHandle() { EXPECT_EQ(cublasCreate(&handle_), CUBLAS_STATUS_SUCCESS); }
  ~CublasHandle() { cublasDestroy(handle_); }
  operator cublasHandle_t() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

// One column-major GEMM: C (m x n, ldc) = alpha op(A) op(B) + beta C.
struct Gemm {
  cublasOperation_t op_a, op_b;
  int m, n, k, lda, ldb, ldc;
  float alpha, beta;

  bool a_transposed() const { return op_a != CUBLAS_OP_N; }
  bool b_transposed() const { return op_b != CUBLAS_OP_N; }
  // Stored sizes: A is m x k (k x m transposed) with leading dimension lda, and so on.
  size_t a_count() const { return size_t(lda) * (a_transposed() ? m : k); }
  size_t b_count() const { return size_t(ldb) * (b_transposed() ? k : n); }
  size_t c_count() const { return size_t(ldc) * n; }
  double a(const std::vector<double>& stored, int i, int l) const {
    return a_transposed() ? stored[l + size_t(i) * lda] : stored[i + size_t(l) * lda];
  }
  double b(const std::vector<double>& stored, int l, int j) const {
    return b_transposed() ? stored[j + size_t(l) * ldb] : stored[l + size_t(j) * ldb];
  }
};

// A stored matrix of `rows` x `cols` with leading dimension ld: random entries, NaN in the padding
// rows a correct GEMM never reads.
std::vector<double> padded_matrix(int rows, int cols, int ld, uint32_t seed) {
  std::vector<double> stored = random_values(size_t(ld) * cols, seed);
  for (int j = 0; j < cols; ++j)
    for (int i = rows; i < ld; ++i) stored[i + size_t(j) * ld] = kNan;
  return stored;
}

// The documented definition, in float64, for the m x n block of C (its padding is left as it was).
Reference gemm_reference(const Gemm& g, const std::vector<double>& a, const std::vector<double>& b,
                         const std::vector<double>& c) {
  Reference ref(g.c_count());
  for (int j = 0; j < g.n; ++j)
    for (int i = 0; i < g.m; ++i) {
      const size_t at = i + size_t(j) * g.ldc;
      for (int l = 0; l < g.k; ++l) ref.add(at, double(g.alpha) * g.a(a, i, l) * g.b(b, l, j));
      if (g.beta != 0.0f) ref.add(at, double(g.beta) * c[at]);
    }
  for (size_t at = 0; at < c.size(); ++at)
    if (int(at % g.ldc) >= g.m) ref.value[at] = c[at];  // padding rows of C stay
  return ref;
}

// C's m x n block within the bound; its padding rows bit-for-bit unchanged (NaN stays NaN).
void expect_gemm_result(const Gemm& g, const std::vector<double>& got, const Reference& ref, double relative,
                        const std::string& what) {
  Reference block(0);
  std::vector<double> got_block;
  for (size_t at = 0; at < got.size(); ++at) {
    if (int(at % g.ldc) >= g.m) {
      EXPECT_TRUE(std::isnan(ref.value[at]) ? std::isnan(got[at]) : got[at] == ref.value[at])
          << what << ": C's padding element " << at << " was written";
      continue;
    }
    got_block.push_back(got[at]);
    block.value.push_back(ref.value[at]);
    block.magnitude.push_back(ref.magnitude[at]);
  }
  expect_within(got_block, block, g.k + 2, relative, what);
}

std::string describe(const Gemm& g) {
  return std::string(g.a_transposed() ? "T" : "N") + (g.b_transposed() ? "T" : "N") + " m=" + std::to_string(g.m) +
         " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k);
}

// Runs an all-f32 GEMM and returns C.
std::vector<double> run_f32_gemm(const Gemm& g, const std::vector<double>& a, const std::vector<double>& b,
                                 const std::vector<double>& c, cublasComputeType_t compute) {
  CublasHandle handle;
  DeviceArray<float> da(as_floats(a)), db(as_floats(b)), dc(as_floats(c));
  EXPECT_EQ(cublasGemmEx(handle, g.op_a, g.op_b, g.m, g.n, g.k, &g.alpha, da.get(), CUDA_R_32F, g.lda, db.get(),
                         CUDA_R_32F, g.ldb, &g.beta, dc.get(), CUDA_R_32F, g.ldc, compute, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  return as_doubles(dc.download());
}

// Small sizes, and sizes past the stand-in's tiles (256 rows, 64 columns, 256 deep) in every direction.
TEST(CublasGemmEx, F32EveryTransposeWithPaddedLeadingDimensions) {
  struct Size {
    int m, n, k;
  };
  for (const Size size : {Size{5, 7, 3}, Size{300, 70, 517}})
    for (cublasOperation_t op_a : {CUBLAS_OP_N, CUBLAS_OP_T})
      for (cublasOperation_t op_b : {CUBLAS_OP_N, CUBLAS_OP_T}) {
        const int m = size.m, n = size.n, k = size.k;
        const Gemm g{op_a, op_b, m, n, k, (op_a == CUBLAS_OP_N ? m : k) + 2, (op_b == CUBLAS_OP_N ? k : n) + 1,
                     m + 3, 1.0f, 0.0f};
        const std::vector<double> a =
            padded_matrix(op_a == CUBLAS_OP_N ? m : k, op_a == CUBLAS_OP_N ? k : m, g.lda, 1);
        const std::vector<double> b =
            padded_matrix(op_b == CUBLAS_OP_N ? k : n, op_b == CUBLAS_OP_N ? n : k, g.ldb, 2);
        std::vector<double> c = padded_matrix(m, n, g.ldc, 3);
        for (int j = 0; j < n; ++j) c[size_t(j) * g.ldc] = kNan;  // beta = 0: C is never read
        const std::vector<double> got = run_f32_gemm(g, a, b, c, CUBLAS_COMPUTE_32F);
        expect_gemm_result(g, got, gemm_reference(g, a, b, c), 0.0, describe(g));
      }
}

TEST(CublasGemmEx, AlphaAndBetaBlendIntoC) {
  const Gemm g{CUBLAS_OP_T, CUBLAS_OP_N, 4, 3, 9, 11, 10, 6, -0.75f, 0.5f};
  const std::vector<double> a = padded_matrix(9, 4, g.lda, 4), b = padded_matrix(9, 3, g.ldb, 5);
  const std::vector<double> c = padded_matrix(4, 3, g.ldc, 6);
  expect_gemm_result(g, run_f32_gemm(g, a, b, c, CUBLAS_COMPUTE_32F), gemm_reference(g, a, b, c), 0.0, describe(g));
}

TEST(CublasGemmEx, KZeroScalesCAndEmptyCIsLeftAlone) {
  const Gemm g{CUBLAS_OP_N, CUBLAS_OP_N, 3, 2, 0, 3, 1, 3, 2.0f, -3.0f};
  const std::vector<double> c = padded_matrix(3, 2, 3, 7);
  const std::vector<double> got = run_f32_gemm(g, {0.0}, {0.0}, c, CUBLAS_COMPUTE_32F);
  for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(got[i], -3.0f * float(c[i])) << i;

  const Gemm empty{CUBLAS_OP_N, CUBLAS_OP_N, 0, 2, 4, 1, 4, 1, 1.0f, 0.0f};
  EXPECT_EQ(run_f32_gemm(empty, random_values(4, 8), random_values(8, 9), {5.0, 6.0}, CUBLAS_COMPUTE_32F),
            (std::vector<double>{5.0, 6.0}));
}

// FAST_TF32 lets tensor cores round each f32 input to 11 significant bits; 32F does not.
TEST(CublasGemmEx, FastTf32RoundsTheInputsAndComputeF32DoesNot) {
  const Gemm g{CUBLAS_OP_N, CUBLAS_OP_T, 6, 5, 17, 6, 5, 6, 1.0f, 0.0f};
  const std::vector<double> a = random_values(g.a_count(), 10), b = random_values(g.b_count(), 11);
  const std::vector<double> c(g.c_count(), 0.0);
  std::vector<double> a_tf32, b_tf32;
  for (double v : a) a_tf32.push_back(to_tf32_value(v));
  for (double v : b) b_tf32.push_back(to_tf32_value(v));
  const std::vector<double> tf32 = run_f32_gemm(g, a, b, c, CUBLAS_COMPUTE_32F_FAST_TF32);
  expect_gemm_result(g, tf32, gemm_reference(g, a_tf32, b_tf32, c), 0.0, "TF32 " + describe(g));
  const std::vector<double> exact = run_f32_gemm(g, a, b, c, CUBLAS_COMPUTE_32F);
  expect_gemm_result(g, exact, gemm_reference(g, a, b, c), 0.0, "32F " + describe(g));
  EXPECT_NE(tf32, exact);
}

TEST(CublasGemmEx, Bf16InputsWithF32AndBf16Outputs) {
  const Gemm g{CUBLAS_OP_T, CUBLAS_OP_T, 7, 4, 5, 6, 7, 9, 1.5f, -0.5f};
  std::vector<double> a = random_values(g.a_count(), 12), b = random_values(g.b_count(), 13);
  std::vector<double> c = random_values(g.c_count(), 14);
  for (std::vector<double>* values : {&a, &b, &c})
    for (double& v : *values) v = to_bf16_value(v);
  const Reference ref = gemm_reference(g, a, b, c);
  CublasHandle handle;
  DeviceArray<uint16_t> da(as_bf16(a)), db(as_bf16(b));

  DeviceArray<float> c32(as_floats(c));
  ASSERT_EQ(cublasGemmEx(handle, g.op_a, g.op_b, g.m, g.n, g.k, &g.alpha, da.get(), CUDA_R_16BF, g.lda, db.get(),
                         CUDA_R_16BF, g.ldb, &g.beta, c32.get(), CUDA_R_32F, g.ldc, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  expect_gemm_result(g, as_doubles(c32.download()), ref, 0.0, "bf16 -> f32 " + describe(g));

  DeviceArray<uint16_t> c16(as_bf16(c));
  ASSERT_EQ(cublasGemmEx(handle, g.op_a, g.op_b, g.m, g.n, g.k, &g.alpha, da.get(), CUDA_R_16BF, g.lda, db.get(),
                         CUDA_R_16BF, g.ldb, &g.beta, c16.get(), CUDA_R_16BF, g.ldc, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  expect_gemm_result(g, bf16_as_doubles(c16.download()), ref, std::ldexp(1.0, -8), "bf16 -> bf16 " + describe(g));
}

// A bf16 C is rounded to nearest, ties to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and
// goes to 1; 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6 and goes to 1 + 2^-6.
TEST(CublasGemmEx, Bf16OutputRoundsHalfwayCasesToEven) {
  CublasHandle handle;
  const float one = 1.0f, zero = 0.0f;
  DeviceArray<uint16_t> ones(as_bf16({1.0, 1.0}));
  for (const auto& [first, expected] : {std::pair{1.0, 1.0}, std::pair{1.0 + std::ldexp(1.0, -7), 1.0 + std::ldexp(1.0, -6)}}) {
    DeviceArray<uint16_t> b(as_bf16({first, std::ldexp(1.0, -8)})), c(1);
    ASSERT_EQ(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 2, &one, ones.get(), CUDA_R_16BF, 1, b.get(),
                           CUDA_R_16BF, 2, &zero, c.get(), CUDA_R_16BF, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(bf16_value(c.download()[0]), expected) << "sum " << first + std::ldexp(1.0, -8);
  }
}

TEST(CublasGemmEx, ReturnsTheDocumentedStatuses) {
  CublasHandle handle;
  DeviceArray<float> a(zeros<float>(64)), b(zeros<float>(64)), c(zeros<float>(64));
  DeviceArray<uint16_t> a16(zeros<uint16_t>(64)), b16(zeros<uint16_t>(64)), c16(zeros<uint16_t>(64));
  const float one = 1.0f;
  auto gemm = [&](cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, const void* pa,
                  cudaDataType ta, int lda, const void* pb, cudaDataType tb, int ldb, void* pc, cudaDataType tc,
                  int ldc, cublasComputeType_t compute) {
    return cublasGemmEx(handle, op_a, op_b, m, n, k, &one, pa, ta, lda, pb, tb, ldb, &one, pc, tc, ldc, compute,
                        CUBLAS_GEMM_DEFAULT);
  };
  const auto N = CUBLAS_OP_N, T = CUBLAS_OP_T;
  const auto F32 = CUDA_R_32F, BF16 = CUDA_R_16BF;
  EXPECT_EQ(gemm(N, N, 4, 3, 2, a.get(), F32, 4, b.get(), F32, 2, c.get(), F32, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_SUCCESS);
  // Leading dimensions below the stored rows: lda < m (N), lda < k (T), ldb < k (N), ldb < n (T), ldc < m.
  EXPECT_EQ(gemm(N, N, 4, 3, 2, a.get(), F32, 3, b.get(), F32, 2, c.get(), F32, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(T, N, 4, 3, 2, a.get(), F32, 1, b.get(), F32, 2, c.get(), F32, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, N, 4, 3, 2, a.get(), F32, 4, b.get(), F32, 1, c.get(), F32, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, T, 4, 3, 2, a.get(), F32, 4, b.get(), F32, 2, c.get(), F32, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, N, 4, 3, 2, a.get(), F32, 4, b.get(), F32, 2, c.get(), F32, 3, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, N, -1, 3, 2, a.get(), F32, 4, b.get(), F32, 2, c.get(), F32, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasGemmEx(handle, N, N, 4, 3, 2, nullptr, a.get(), F32, 4, b.get(), F32, 2, &one, c.get(), F32, 4,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);
  // Type combinations the documentation does not list: f32 x f32 -> bf16, TF32 with bf16, mixed A/B.
  EXPECT_EQ(gemm(N, N, 4, 3, 2, a.get(), F32, 4, b.get(), F32, 2, c16.get(), BF16, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(N, N, 4, 3, 2, a16.get(), BF16, 4, b16.get(), BF16, 2, c.get(), F32, 4, CUBLAS_COMPUTE_32F_FAST_TF32),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(N, N, 4, 3, 2, a16.get(), BF16, 4, b.get(), F32, 2, c.get(), F32, 4, CUBLAS_COMPUTE_32F),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(nullptr, N, N, 4, 3, 2, &one, a.get(), F32, 4, b.get(), F32, 2, &one, c.get(), F32, 4,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_INITIALIZED);
  cudaDeviceSynchronize();
}

TEST(CublasHandles, LtHandlesAndStreamsAreAccepted) {
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtDestroy(lt), CUBLAS_STATUS_SUCCESS);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  CublasHandle handle;
  EXPECT_EQ(cublasSetStream(handle, stream), CUBLAS_STATUS_SUCCESS);
  const Gemm g{CUBLAS_OP_N, CUBLAS_OP_N, 3, 3, 3, 3, 3, 3, 1.0f, 0.0f};
  const std::vector<double> a = random_values(9, 15), b = random_values(9, 16);
  DeviceArray<float> da(as_floats(a)), db(as_floats(b)), dc(9);
  ASSERT_EQ(cublasGemmEx(handle, g.op_a, g.op_b, 3, 3, 3, &g.alpha, da.get(), CUDA_R_32F, 3, db.get(), CUDA_R_32F, 3,
                         &g.beta, dc.get(), CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  expect_gemm_result(g, as_doubles(dc.download()), gemm_reference(g, a, b, std::vector<double>(9, 0.0)), 0.0,
                     "on a stream");
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// ---- misuse the emulator reports (the process dies, as a faulting GPU would end it) -----------------

class LibraryMisuse : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void gemm_reading_host_memory() {
  CublasHandle handle;
  std::vector<float> host(16);
  DeviceArray<float> device(zeros<float>(16));
  const float one = 1.0f;
  cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, host.data(), CUDA_R_32F, 4, device.get(), CUDA_R_32F,
               4, &one, device.get(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

void gemm_with_alpha_in_device_memory() {
  CublasHandle handle;
  DeviceArray<float> a(zeros<float>(4)), b(zeros<float>(4)), c(4), alpha(zeros<float>(1));
  const float zero = 0.0f;
  cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, alpha.get(), a.get(), CUDA_R_32F, 2, b.get(), CUDA_R_32F,
               2, &zero, c.get(), CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

void use_a_destroyed_cublas_handle() {
  cublasHandle_t handle = nullptr;
  cublasCreate(&handle);
  cublasDestroy(handle);
  cublasSetStream(handle, nullptr);
}

TEST_F(LibraryMisuse, HostMemoryPassedToCublasGemmEx) {
  EXPECT_DEATH(gemm_reading_host_memory(), "cublasGemmEx.*A = .* is not device memory");
}

TEST_F(LibraryMisuse, CublasAlphaInDeviceMemory) {
  EXPECT_DEATH(gemm_with_alpha_in_device_memory(), "alpha points to device memory");
}

TEST_F(LibraryMisuse, DestroyedCublasHandle) {
  EXPECT_DEATH(use_a_destroyed_cublas_handle(), "cublasSetStream: the handle was never created or is already destroyed");
}

// ---- cuDNN ------------------------------------------------------------------------------------------

// One 2-d convolution problem: x [n, c, h, w], filter [k, c, r, s], as the documentation indexes them.
struct Conv {
  int n, c, h, w, k, r, s;
  int pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NHWC;  // of x, y and the filter (NHWC filter: KRSC)

  int oh() const { return 1 + (h + 2 * pad_h - ((r - 1) * dilation_h + 1)) / stride_h; }
  int ow() const { return 1 + (w + 2 * pad_w - ((s - 1) * dilation_w + 1)) / stride_w; }
  size_t x_count() const { return size_t(n) * c * h * w; }
  size_t y_count() const { return size_t(n) * k * oh() * ow(); }
  size_t w_count() const { return size_t(k) * c * r * s; }
  int terms_per_output() const { return c * r * s; }
  std::string text() const {
    return "x [" + std::to_string(n) + "," + std::to_string(c) + "," + std::to_string(h) + "," + std::to_string(w) +
           "] filter [" + std::to_string(k) + "," + std::to_string(c) + "," + std::to_string(r) + "," +
           std::to_string(s) + "] pad " + std::to_string(pad_h) + "," + std::to_string(pad_w) + " stride " +
           std::to_string(stride_h) + "," + std::to_string(stride_w) + " dilation " + std::to_string(dilation_h) +
           "," + std::to_string(dilation_w) + (mode == CUDNN_CONVOLUTION ? " CONVOLUTION" : "") +
           (format == CUDNN_TENSOR_NCHW ? " NCHW" : " NHWC");
  }

  // Position of element [a, b, y, x] of an array of dims [A, B, Y, X] stored in `format`.
  size_t at(int a, int b, int y, int x, int B, int Y, int X) const {
    return format == CUDNN_TENSOR_NCHW ? ((size_t(a) * B + b) * Y + y) * X + x : ((size_t(a) * Y + y) * X + x) * B + b;
  }
  size_t x_at(int i, int j, int y, int x) const { return at(i, j, y, x, c, h, w); }
  size_t y_at(int i, int j, int y, int x) const { return at(i, j, y, x, k, oh(), ow()); }
  size_t w_at(int i, int j, int y, int x) const { return at(i, j, y, x, c, r, s); }

  // Calls visit(x position, filter position, y position) for every product of the documented sum:
  // output [i, o, p, q] takes x[i, j, p u - pad + a d, q v - pad + b e] times filter tap (a, b), turned
  // around in CUDNN_CONVOLUTION mode; taps outside the image contribute nothing.
  void for_each_product(const std::function<void(size_t, size_t, size_t)>& visit) const {
    for (int i = 0; i < n; ++i)
      for (int o = 0; o < k; ++o)
        for (int p = 0; p < oh(); ++p)
          for (int q = 0; q < ow(); ++q)
            for (int j = 0; j < c; ++j)
              for (int a = 0; a < r; ++a)
                for (int b = 0; b < s; ++b) {
                  const int y = p * stride_h - pad_h + a * dilation_h, x = q * stride_w - pad_w + b * dilation_w;
                  if (y < 0 || y >= h || x < 0 || x >= w) continue;
                  const int fa = mode == CUDNN_CONVOLUTION ? r - 1 - a : a;
                  const int fb = mode == CUDNN_CONVOLUTION ? s - 1 - b : b;
                  visit(x_at(i, j, y, x), w_at(o, j, fa, fb), y_at(i, o, p, q));
                }
  }
};

class CudnnHandle {
 public:
  CudnnHandle() { EXPECT_EQ(cudnnCreate(&handle_), CUDNN_STATUS_SUCCESS); }
  ~CudnnHandle() { cudnnDestroy(handle_); }
  operator cudnnHandle_t() const { return handle_; }

 private:
  cudnnHandle_t handle_ = nullptr;
};

struct ConvDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  ConvDescriptors(const Conv& p, cudnnDataType_t type, cudnnMathType_t math) {
    cudnnCreateTensorDescriptor(&x);
    cudnnCreateTensorDescriptor(&y);
    cudnnCreateFilterDescriptor(&w);
    cudnnCreateConvolutionDescriptor(&conv);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(x, p.format, type, p.n, p.c, p.h, p.w), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetTensor4dDescriptor(y, p.format, type, p.n, p.k, p.oh(), p.ow()), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetFilter4dDescriptor(w, type, p.format, p.k, p.c, p.r, p.s), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dilation_h,
                                              p.dilation_w, p.mode, CUDNN_DATA_FLOAT),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolutionMathType(conv, math), CUDNN_STATUS_SUCCESS);
  }
  ~ConvDescriptors() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
  }
};

enum class Direction { Forward, BackwardData, BackwardFilter };

const char* name(Direction d) {
  return d == Direction::Forward ? "forward" : d == Direction::BackwardData ? "backward data" : "backward filter";
}

// The documented result of a direction, blended: alpha * sum + beta * old output.
Reference conv_reference(const Conv& p, Direction d, const std::vector<double>& first, const std::vector<double>& second,
                         const std::vector<double>& old_output, double alpha, double beta) {
  Reference ref(old_output.size());
  p.for_each_product([&](size_t x_at, size_t w_at, size_t y_at) {
    switch (d) {
      case Direction::Forward: ref.add(y_at, alpha * first[x_at] * second[w_at]); break;       // x, w
      case Direction::BackwardData: ref.add(x_at, alpha * first[y_at] * second[w_at]); break;  // dy, w
      case Direction::BackwardFilter: ref.add(w_at, alpha * first[x_at] * second[y_at]); break;  // x, dy
    }
  });
  if (beta != 0.0)
    for (size_t i = 0; i < old_output.size(); ++i) ref.add(i, beta * old_output[i]);
  return ref;
}

// The sizes of a direction's inputs and output.
struct Sizes {
  size_t first, second, output;
};
Sizes sizes(const Conv& p, Direction d) {
  switch (d) {
    case Direction::Forward: return {p.x_count(), p.w_count(), p.y_count()};
    case Direction::BackwardData: return {p.y_count(), p.w_count(), p.x_count()};
    case Direction::BackwardFilter: return {p.x_count(), p.y_count(), p.w_count()};
  }
  return {};
}

// The number of products in one output element's sum (an upper bound for the gradients).
int terms(const Conv& p, Direction d) {
  switch (d) {
    case Direction::Forward: return p.terms_per_output();
    case Direction::BackwardData: return p.k * p.r * p.s;
    case Direction::BackwardFilter: return p.n * p.oh() * p.ow();
  }
  return 0;
}

// Runs one direction with the given algorithm and workspace on device arrays of `Element`
// (float or bf16 bits); returns the status.
template <class Element>
cudnnStatus_t run_direction(cudnnHandle_t handle, const ConvDescriptors& desc, Direction d, int algo,
                            const DeviceArray<Element>& first, const DeviceArray<Element>& second,
                            DeviceArray<Element>& output, void* workspace, size_t workspace_bytes, float alpha,
                            float beta) {
  switch (d) {
    case Direction::Forward:
      return cudnnConvolutionForward(handle, &alpha, desc.x, first.get(), desc.w, second.get(), desc.conv,
                                     cudnnConvolutionFwdAlgo_t(algo), workspace, workspace_bytes, &beta, desc.y,
                                     output.get());
    case Direction::BackwardData:
      return cudnnConvolutionBackwardData(handle, &alpha, desc.w, second.get(), desc.y, first.get(), desc.conv,
                                          cudnnConvolutionBwdDataAlgo_t(algo), workspace, workspace_bytes, &beta,
                                          desc.x, output.get());
    case Direction::BackwardFilter:
      return cudnnConvolutionBackwardFilter(handle, &alpha, desc.x, first.get(), desc.y, second.get(), desc.conv,
                                            cudnnConvolutionBwdFilterAlgo_t(algo), workspace, workspace_bytes, &beta,
                                            desc.w, output.get());
  }
  return CUDNN_STATUS_INTERNAL_ERROR;
}

// The algorithm every direction offers without a workspace.
int no_workspace_algorithm(Direction d) {
  switch (d) {
    case Direction::Forward: return CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    case Direction::BackwardData: return CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    case Direction::BackwardFilter: return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
  }
  return -1;
}

// One f32 run of a direction checked against the definition.
void check_f32_direction(const Conv& p, Direction d, float alpha, float beta, uint32_t seed,
                         cudnnMathType_t math = CUDNN_FMA_MATH) {
  const Sizes n = sizes(p, d);
  const std::vector<double> first = random_values(n.first, seed), second = random_values(n.second, seed + 1);
  std::vector<double> old_output = random_values(n.output, seed + 2);
  if (beta == 0.0f) old_output.assign(n.output, kNan);  // beta = 0: the old output is never read
  CudnnHandle handle;
  ConvDescriptors desc(p, CUDNN_DATA_FLOAT, math);
  DeviceArray<float> a(as_floats(first)), b(as_floats(second)), out(as_floats(old_output));
  ASSERT_EQ(run_direction(handle, desc, d, no_workspace_algorithm(d), a, b, out, nullptr, 0, alpha, beta),
            CUDNN_STATUS_SUCCESS)
      << name(d) << " " << p.text();
  expect_within(as_doubles(out.download()),
                conv_reference(p, d, first, second, old_output, alpha, beta == 0.0f ? 0.0 : beta), terms(p, d) + 2,
                0.0, std::string(name(d)) + " " + p.text());
}

const Conv kOddShapes[] = {
    {2, 3, 7, 6, 5, 3, 2, 1, 0, 2, 1, 1, 1},  // stride 2 vertically, no padding horizontally
    {1, 4, 9, 8, 3, 3, 3, 2, 1, 1, 2, 2, 1},  // dilation 2 vertically, stride 2 horizontally
    {3, 2, 5, 5, 4, 1, 1, 0, 0, 1, 1, 1, 1},  // 1 x 1
    {1, 5, 6, 7, 2, 5, 3, 2, 1, 3, 2, 1, 2},  // 5 x 3 taps, stride 3, dilation 2 horizontally
};

TEST(CudnnConvolution, ForwardMatchesTheDefinition) {
  for (const Conv& p : kOddShapes) check_f32_direction(p, Direction::Forward, 1.0f, 0.0f, 20);
}

TEST(CudnnConvolution, BackwardDataMatchesTheDefinition) {
  for (const Conv& p : kOddShapes) check_f32_direction(p, Direction::BackwardData, 1.0f, 0.0f, 30);
}

TEST(CudnnConvolution, BackwardFilterMatchesTheDefinition) {
  for (const Conv& p : kOddShapes) check_f32_direction(p, Direction::BackwardFilter, 1.0f, 0.0f, 40);
}

TEST(CudnnConvolution, AlphaAndBetaBlendIntoTheOutput) {
  const Conv p = kOddShapes[1];
  for (Direction d : {Direction::Forward, Direction::BackwardData, Direction::BackwardFilter}) {
    check_f32_direction(p, d, 0.5f, -2.0f, 50);
    check_f32_direction(p, d, 1.0f, 1.0f, 60);  // accumulate, as cuface does into a gradient
  }
}

TEST(CudnnConvolution, ConvolutionModeTurnsTheFilterAndNchwLayoutsWork) {
  for (Conv p : {kOddShapes[0], kOddShapes[3]}) {
    p.mode = CUDNN_CONVOLUTION;
    for (Direction d : {Direction::Forward, Direction::BackwardData, Direction::BackwardFilter})
      check_f32_direction(p, d, 1.0f, 0.0f, 70);
    p.format = CUDNN_TENSOR_NCHW;
    for (Direction d : {Direction::Forward, Direction::BackwardData, Direction::BackwardFilter})
      check_f32_direction(p, d, 1.0f, 0.0f, 80);
  }
}

// bf16 data with a FLOAT compute type: bf16 inputs read exactly, f32 sums, bf16 results.
TEST(CudnnConvolution, Bf16DataSumsInF32AndRoundsTheResult) {
  const Conv p = kOddShapes[0];
  for (Direction d : {Direction::Forward, Direction::BackwardData, Direction::BackwardFilter}) {
    const Sizes n = sizes(p, d);
    std::vector<double> first = random_values(n.first, 90), second = random_values(n.second, 91);
    std::vector<double> old_output = random_values(n.output, 92);
    for (std::vector<double>* values : {&first, &second, &old_output})
      for (double& v : *values) v = to_bf16_value(v);
    CudnnHandle handle;
    ConvDescriptors desc(p, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_OP_MATH);
    DeviceArray<uint16_t> a(as_bf16(first)), b(as_bf16(second)), out(as_bf16(old_output));
    ASSERT_EQ(run_direction(handle, desc, d, no_workspace_algorithm(d), a, b, out, nullptr, 0, 1.0f, 0.25f),
              CUDNN_STATUS_SUCCESS);
    expect_within(bf16_as_doubles(out.download()), conv_reference(p, d, first, second, old_output, 1.0, 0.25),
                  terms(p, d) + 2, std::ldexp(1.0, -8), std::string("bf16 ") + name(d));
  }
}

// f32 data: CUDNN_DEFAULT_MATH may use TF32 tensor cores (inputs rounded to 11 significant bits);
// CUDNN_FMA_MATH is exact f32.
TEST(CudnnConvolution, DefaultMathRoundsF32InputsToTf32AndFmaMathDoesNot) {
  const Conv p = kOddShapes[1];
  const std::vector<double> x = random_values(p.x_count(), 100), w = random_values(p.w_count(), 101);
  std::vector<double> x_tf32, w_tf32;
  for (double v : x) x_tf32.push_back(to_tf32_value(v));
  for (double v : w) w_tf32.push_back(to_tf32_value(v));
  const std::vector<double> nan_output(p.y_count(), kNan);
  CudnnHandle handle;
  std::vector<double> results[2];
  for (cudnnMathType_t math : {CUDNN_DEFAULT_MATH, CUDNN_FMA_MATH}) {
    ConvDescriptors desc(p, CUDNN_DATA_FLOAT, math);
    DeviceArray<float> dx(as_floats(x)), dw(as_floats(w)), dy(p.y_count());
    ASSERT_EQ(run_direction(handle, desc, Direction::Forward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, dx, dw, dy,
                            nullptr, 0, 1.0f, 0.0f),
              CUDNN_STATUS_SUCCESS);
    const bool tf32 = math == CUDNN_DEFAULT_MATH;
    results[tf32] = as_doubles(dy.download());
    expect_within(results[tf32],
                  conv_reference(p, Direction::Forward, tf32 ? x_tf32 : x, tf32 ? w_tf32 : w, nan_output, 1.0, 0.0),
                  p.terms_per_output(), 0.0, tf32 ? "default math" : "FMA math");
  }
  EXPECT_NE(results[0], results[1]);
}

struct SearchResult {
  int algo;
  cudnnStatus_t status;
  size_t memory;
};

template <class Perf>
std::vector<SearchResult> search_results(const std::vector<Perf>& perf, int returned) {
  std::vector<SearchResult> results;
  for (int i = 0; i < returned; ++i) results.push_back({int(perf[size_t(i)].algo), perf[size_t(i)].status, perf[size_t(i)].memory});
  return results;
}

// Runs a direction's cudnnGet*AlgorithmMaxCount and cudnnFind*AlgorithmEx with `budget` bytes of
// workspace; returns the search's status.
cudnnStatus_t find_algorithms(cudnnHandle_t handle, const ConvDescriptors& desc, Direction d,
                              const DeviceArray<float>& first, const DeviceArray<float>& second,
                              DeviceArray<float>& output, void* workspace, size_t budget, int* count,
                              std::vector<SearchResult>* results) {
  int returned = 0;
  cudnnStatus_t status = CUDNN_STATUS_INTERNAL_ERROR;
  switch (d) {
    case Direction::Forward: {
      EXPECT_EQ(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, count), CUDNN_STATUS_SUCCESS);
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(*count));
      status = cudnnFindConvolutionForwardAlgorithmEx(handle, desc.x, first.get(), desc.w, second.get(), desc.conv,
                                                      desc.y, output.get(), *count, &returned, perf.data(), workspace,
                                                      budget);
      *results = search_results(perf, returned);
      break;
    }
    case Direction::BackwardData: {
      EXPECT_EQ(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, count), CUDNN_STATUS_SUCCESS);
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(*count));
      status = cudnnFindConvolutionBackwardDataAlgorithmEx(handle, desc.w, second.get(), desc.y, first.get(),
                                                           desc.conv, desc.x, output.get(), *count, &returned,
                                                           perf.data(), workspace, budget);
      *results = search_results(perf, returned);
      break;
    }
    case Direction::BackwardFilter: {
      EXPECT_EQ(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, count), CUDNN_STATUS_SUCCESS);
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(*count));
      status = cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, desc.x, first.get(), desc.y, second.get(),
                                                             desc.conv, desc.w, output.get(), *count, &returned,
                                                             perf.data(), workspace, budget);
      *results = search_results(perf, returned);
      break;
    }
  }
  return status;
}

// The searches report working algorithms first, each with a workspace size the caller's budget
// covers, and each runs right with that workspace; an algorithm needing more is ALLOC_FAILED.
TEST(CudnnConvolution, SearchesReportWorkingAlgorithmsWithTheirWorkspaces) {
  const Conv p = kOddShapes[1];
  CudnnHandle handle;
  ConvDescriptors desc(p, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH);
  for (Direction d : {Direction::Forward, Direction::BackwardData, Direction::BackwardFilter}) {
    const Sizes n = sizes(p, d);
    const std::vector<double> first = random_values(n.first, 110), second = random_values(n.second, 111);
    const Reference ref = conv_reference(p, d, first, second, std::vector<double>(n.output, 0.0), 1.0, 0.0);
    DeviceArray<float> a(as_floats(first)), b(as_floats(second)), out(n.output);
    for (size_t budget : {size_t(1) << 20, size_t(64)}) {
      DeviceArray<char> workspace(budget);
      int count = 0;
      std::vector<SearchResult> results;
      ASSERT_EQ(find_algorithms(handle, desc, d, a, b, out, workspace.get(), budget, &count, &results),
                CUDNN_STATUS_SUCCESS)
          << name(d);
      ASSERT_FALSE(results.empty());
      ASSERT_LE(int(results.size()), count);
      ASSERT_EQ(results[0].status, CUDNN_STATUS_SUCCESS) << name(d) << ": the first result works";
      bool failed_seen = false, too_large_seen = false;
      for (const SearchResult& r : results) {
        if (r.status != CUDNN_STATUS_SUCCESS) {
          failed_seen = true;
          if (r.status == CUDNN_STATUS_ALLOC_FAILED) {
            EXPECT_GT(r.memory, budget);
            too_large_seen = true;
          }
          continue;
        }
        EXPECT_FALSE(failed_seen) << name(d) << ": working algorithms come first";
        EXPECT_LE(r.memory, budget);
        DeviceArray<float> result(n.output);
        ASSERT_EQ(run_direction(handle, desc, d, r.algo, a, b, result, workspace.get(), r.memory, 1.0f, 0.0f),
                  CUDNN_STATUS_SUCCESS)
            << name(d) << " algo " << r.algo;
        expect_within(as_doubles(result.download()), ref, terms(p, d), 0.0,
                      std::string(name(d)) + " algo " + std::to_string(r.algo));
      }
      if (budget == 64) {
        EXPECT_TRUE(too_large_seen) << name(d) << ": some algorithm needs more than 64 bytes";
      }
      // The search ran the algorithms on the output: the documentation promises arbitrary values there.
      const std::vector<float> scribbled = out.download();
      EXPECT_TRUE(std::all_of(scribbled.begin(), scribbled.end(), [](float v) { return std::isnan(v); }));
    }
  }
}

TEST(CudnnConvolution, ReturnsTheDocumentedStatuses) {
  const Conv p = kOddShapes[0];
  CudnnHandle handle;
  ConvDescriptors desc(p, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH);
  DeviceArray<float> x(zeros<float>(p.x_count())), w(zeros<float>(p.w_count())), y(p.y_count()), big(1 << 16);
  const float one = 1.0f, zero = 0.0f;
  auto forward = [&](cudnnTensorDescriptor_t x_desc, cudnnFilterDescriptor_t w_desc, cudnnTensorDescriptor_t y_desc,
                     int algo, size_t workspace_bytes) {
    return cudnnConvolutionForward(handle, &one, x_desc, x.get(), w_desc, w.get(), desc.conv,
                                   cudnnConvolutionFwdAlgo_t(algo), big.get(), workspace_bytes, &zero, y_desc,
                                   y.get());
  };
  EXPECT_EQ(forward(desc.x, desc.w, desc.y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0), CUDNN_STATUS_SUCCESS);
  // y's height one too many, a filter with other input channels, an f32 tensor beside a bf16 one.
  ConvDescriptors other(p, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH);
  cudnnSetTensor4dDescriptor(other.y, p.format, CUDNN_DATA_FLOAT, p.n, p.k, p.oh() + 1, p.ow());
  EXPECT_EQ(forward(desc.x, desc.w, other.y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0), CUDNN_STATUS_BAD_PARAM);
  cudnnSetFilter4dDescriptor(other.w, CUDNN_DATA_FLOAT, p.format, p.k, p.c + 1, p.r, p.s);
  EXPECT_EQ(forward(desc.x, other.w, desc.y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0), CUDNN_STATUS_BAD_PARAM);
  cudnnSetTensor4dDescriptor(other.x, p.format, CUDNN_DATA_BFLOAT16, p.n, p.c, p.h, p.w);
  EXPECT_EQ(forward(other.x, desc.w, desc.y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0), CUDNN_STATUS_BAD_PARAM);
  // An algorithm the stand-in does not offer, a workspace below the algorithm's need, a bad algo id.
  EXPECT_EQ(forward(desc.x, desc.w, desc.y, CUDNN_CONVOLUTION_FWD_ALGO_FFT, 1 << 18), CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(forward(desc.x, desc.w, desc.y, CUDNN_CONVOLUTION_FWD_ALGO_GEMM, 0), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(forward(desc.x, desc.w, desc.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, 0), CUDNN_STATUS_BAD_PARAM);
  // bf16 computed in bf16 ("true bf16") is not a cuDNN configuration.
  ConvDescriptors bf16(p, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_OP_MATH);
  cudnnSetConvolution2dDescriptor(bf16.conv, p.pad_h, p.pad_w, p.stride_h, p.stride_w, 1, 1, CUDNN_CROSS_CORRELATION,
                                  CUDNN_DATA_BFLOAT16);
  EXPECT_EQ(cudnnConvolutionForward(handle, &one, bf16.x, x.get(), bf16.w, w.get(), bf16.conv,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero, bf16.y, y.get()),
            CUDNN_STATUS_NOT_SUPPORTED);
  // Descriptor setters reject what cannot describe a convolution.
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(other.conv, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(other.conv, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(other.x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 0, 1, 1, 1), CUDNN_STATUS_BAD_PARAM);
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
  cudaDeviceSynchronize();
}

// A forward convolution on device tensors, except that `x` may be given (host memory, say), and with
// the given algorithm and workspace.
void convolve_forward(const float* x_override, cudnnConvolutionFwdAlgo_t algo, bool workspace_is_x) {
  const Conv p = kOddShapes[2];
  CudnnHandle handle;
  ConvDescriptors desc(p, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH);
  DeviceArray<float> x(zeros<float>(p.x_count())), w(zeros<float>(p.w_count())), y(p.y_count());
  const float one = 1.0f, zero = 0.0f;
  cudnnConvolutionForward(handle, &one, desc.x, x_override ? x_override : x.get(), desc.w, w.get(), desc.conv, algo,
                          workspace_is_x ? x.get() : nullptr, workspace_is_x ? x.bytes() : 0, &zero, desc.y, y.get());
}

TEST_F(LibraryMisuse, HostMemoryPassedToCudnnConvolutionForward) {
  const std::vector<float> host_x(kOddShapes[2].x_count());
  EXPECT_DEATH(convolve_forward(host_x.data(), CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, false),
               "cudnnConvolutionForward.*x = .* is not device memory");
}

TEST_F(LibraryMisuse, CudnnWorkspaceOverlappingATensor) {
  // The GEMM algorithm's workspace (the im2col of x) is as large as x here, so x itself fits as one.
  EXPECT_DEATH(convolve_forward(nullptr, CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true), "the workspace overlaps a tensor");
}

// ---- CUB --------------------------------------------------------------------------------------------

TEST(CubRadixSort, SortsKeysThroughTheTwoPhaseProtocol) {
  for (int n : {1, 7, 1027}) {
    std::mt19937_64 generator(static_cast<uint64_t>(n));
    std::vector<uint64_t> keys(static_cast<size_t>(n));
    for (uint64_t& key : keys) key = generator();
    keys[0] = keys[size_t(n) / 2];  // a repeated key
    DeviceArray<uint64_t> in(keys), out(keys.size());
    size_t bytes = 0;
    ASSERT_EQ(cub::DeviceRadixSort::SortKeys(nullptr, bytes, static_cast<const uint64_t*>(nullptr),
                                             static_cast<uint64_t*>(nullptr), n),
              cudaSuccess);
    ASSERT_GT(bytes, 0u);
    DeviceArray<char> temp(bytes);
    ASSERT_EQ(cub::DeviceRadixSort::SortKeys(temp.get(), bytes, in.get(), out.get(), n, 0, 64, nullptr), cudaSuccess);
    std::vector<uint64_t> expected = keys;
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(out.download(), expected) << n << " keys";
    EXPECT_EQ(in.download(), keys) << "the input keys are left as they were";
  }
}

// Only bits [begin_bit, end_bit) order the keys, and equal ones keep their order (the sort is stable).
TEST(CubRadixSort, OrdersByTheBitRangeAloneAndIsStable) {
  const int n = 513, begin_bit = 8, end_bit = 21;
  std::mt19937_64 generator(5);
  std::vector<uint64_t> keys(n);
  for (uint64_t& key : keys) key = generator() & ~(uint64_t(0x1f) << 16);  // few distinct values in the range
  const auto bits = [&](uint64_t key) { return (key >> begin_bit) & ((uint64_t(1) << (end_bit - begin_bit)) - 1); };
  std::vector<uint64_t> expected = keys;
  std::stable_sort(expected.begin(), expected.end(), [&](uint64_t a, uint64_t b) { return bits(a) < bits(b); });
  DeviceArray<uint64_t> in(keys), out(keys.size());
  size_t bytes = 0;
  ASSERT_EQ(cub::DeviceRadixSort::SortKeys(nullptr, bytes, in.get(), out.get(), n, begin_bit, end_bit), cudaSuccess);
  DeviceArray<char> temp(bytes);
  ASSERT_EQ(cub::DeviceRadixSort::SortKeys(temp.get(), bytes, in.get(), out.get(), n, begin_bit, end_bit), cudaSuccess);
  EXPECT_EQ(out.download(), expected);
}

TEST(CubRadixSort, TooLittleTemporaryStorageIsAnInvalidValue) {
  DeviceArray<uint64_t> in(100), out(100);
  size_t bytes = 0;
  ASSERT_EQ(cub::DeviceRadixSort::SortKeys(nullptr, bytes, in.get(), out.get(), 100), cudaSuccess);
  DeviceArray<char> temp(bytes);
  size_t too_few = bytes - 1;
  EXPECT_EQ(cub::DeviceRadixSort::SortKeys(temp.get(), too_few, in.get(), out.get(), 100), cudaErrorInvalidValue);
}

TEST(CubScan, ExclusiveSumOutOfPlaceAndInPlace) {
  for (int n : {1, 255, 256, 1001}) {
    std::mt19937 generator(static_cast<uint32_t>(n));
    std::uniform_int_distribution<int32_t> values(-1000, 1000);
    std::vector<int32_t> items(static_cast<size_t>(n));
    for (int32_t& v : items) v = values(generator);
    std::vector<int32_t> expected(size_t(n), 0);
    std::partial_sum(items.begin(), items.end() - 1, expected.begin() + 1);
    size_t bytes = 0;
    ASSERT_EQ(cub::DeviceScan::ExclusiveSum(nullptr, bytes, static_cast<const int32_t*>(nullptr),
                                            static_cast<int32_t*>(nullptr), n),
              cudaSuccess);
    DeviceArray<char> temp(bytes);
    DeviceArray<int32_t> in(items), out(items.size());
    ASSERT_EQ(cub::DeviceScan::ExclusiveSum(temp.get(), bytes, in.get(), out.get(), n), cudaSuccess);
    EXPECT_EQ(out.download(), expected) << n << " items";
    ASSERT_EQ(cub::DeviceScan::ExclusiveSum(temp.get(), bytes, in.get(), in.get(), n), cudaSuccess);
    EXPECT_EQ(in.download(), expected) << n << " items in place";
  }
}

void scan_with_host_temporary_storage() {
  DeviceArray<int32_t> in(zeros<int32_t>(10)), out(10);
  size_t bytes = 0;
  cub::DeviceScan::ExclusiveSum(nullptr, bytes, in.get(), out.get(), 10);
  std::vector<char> host(bytes);
  cub::DeviceScan::ExclusiveSum(host.data(), bytes, in.get(), out.get(), 10);
}

TEST_F(LibraryMisuse, HostTemporaryStorageForCub) {
  EXPECT_DEATH(scan_with_host_temporary_storage(), "d_temp_storage = .* is not device memory");
}

// ---- NCCL -------------------------------------------------------------------------------------------

ncclComm_t one_rank() {
  ncclUniqueId id;
  EXPECT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  ncclComm_t comm = nullptr;
  EXPECT_EQ(ncclCommInitRank(&comm, 1, id, 0), ncclSuccess);
  return comm;
}

TEST(NcclOneRank, CollectivesLeaveEachRanksDataInPlaceOrCopied) {
  ncclComm_t comm = one_rank();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  const std::vector<float> values = as_floats(random_values(37, 120));
  const std::vector<uint16_t> bf16_values = as_bf16({1.0, -0.5, 3.0, 0.00390625, -2.0});

  for (ncclRedOp_t op : {ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg}) {
    DeviceArray<float> send(values), receive(values.size());
    ASSERT_EQ(ncclAllReduce(send.get(), receive.get(), values.size(), ncclFloat32, op, comm, stream), ncclSuccess);
    EXPECT_EQ(receive.download(), values) << "op " << op;
  }
  DeviceArray<uint16_t> in_place(bf16_values);
  ASSERT_EQ(ncclAllReduce(in_place.get(), in_place.get(), bf16_values.size(), ncclBfloat16, ncclSum, comm, stream),
            ncclSuccess);
  EXPECT_EQ(in_place.download(), bf16_values);

  DeviceArray<float> root(values), copy(values.size());
  ASSERT_EQ(ncclBroadcast(root.get(), copy.get(), values.size(), ncclFloat32, 0, comm, stream), ncclSuccess);
  EXPECT_EQ(copy.download(), values);
  ASSERT_EQ(ncclBroadcast(root.get(), root.get(), values.size(), ncclFloat32, 0, comm, stream), ncclSuccess);
  EXPECT_EQ(root.download(), values);

  DeviceArray<uint16_t> gather_in(bf16_values), gathered(bf16_values.size());
  ASSERT_EQ(ncclAllGather(gather_in.get(), gathered.get(), bf16_values.size(), ncclBfloat16, comm, stream),
            ncclSuccess);
  EXPECT_EQ(gathered.download(), bf16_values);
  ASSERT_EQ(ncclAllGather(gathered.get(), gathered.get(), bf16_values.size(), ncclBfloat16, comm, stream),
            ncclSuccess);
  EXPECT_EQ(gathered.download(), bf16_values);

  ncclResult_t async = ncclInternalError;
  EXPECT_EQ(ncclCommGetAsyncError(comm, &async), ncclSuccess);
  EXPECT_EQ(async, ncclSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(ncclCommDestroy(comm), ncclSuccess);
  EXPECT_EQ(ncclCommAbort(one_rank()), ncclSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(NcclOneRank, ErrorsAreReportedWithTheirDetails) {
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  ncclComm_t comm = nullptr;
  EXPECT_EQ(ncclCommInitRank(&comm, 2, id, 0), ncclInvalidUsage);
  EXPECT_NE(std::string(ncclGetLastError(nullptr)).find("runs one rank, and 2 ranks were asked for"),
            std::string::npos)
      << ncclGetLastError(nullptr);
  EXPECT_EQ(ncclCommInitRank(&comm, 1, id, 1), ncclInvalidArgument);
  ncclUniqueId never_made{};
  EXPECT_EQ(ncclCommInitRank(&comm, 1, never_made, 0), ncclInvalidArgument);
  EXPECT_NE(std::string(ncclGetLastError(nullptr)).find("not made by ncclGetUniqueId"), std::string::npos);

  comm = one_rank();
  std::vector<float> host(4);
  DeviceArray<float> device(4);
  EXPECT_EQ(ncclAllReduce(host.data(), device.get(), 4, ncclFloat32, ncclSum, comm, nullptr), ncclInvalidArgument);
  EXPECT_NE(std::string(ncclGetLastError(comm)).find("sendbuff is not device memory"), std::string::npos);
  EXPECT_EQ(ncclAllReduce(device.get(), device.get(), 4, ncclDataType_t(42), ncclSum, comm, nullptr),
            ncclInvalidArgument);
  EXPECT_EQ(ncclBroadcast(device.get(), device.get(), 4, ncclFloat32, 1, comm, nullptr), ncclInvalidArgument);
  EXPECT_STREQ(ncclGetErrorString(ncclInvalidArgument), "invalid argument");
  EXPECT_EQ(ncclCommDestroy(comm), ncclSuccess);
  EXPECT_EQ(ncclCommDestroy(nullptr), ncclSuccess);
}

void use_an_aborted_communicator() {
  ncclComm_t comm = one_rank();
  ncclCommAbort(comm);
  ncclResult_t async;
  ncclCommGetAsyncError(comm, &async);
}

TEST_F(LibraryMisuse, NcclCommunicatorUsedAfterAbort) {
  EXPECT_DEATH(use_an_aborted_communicator(),
               "ncclCommGetAsyncError: the handle was never created or is already destroyed");
}

}  // namespace
