// GEMM against a naive float64 reference: the raw CPU sgemm (transposes, odd sizes that cross every
// blocking boundary, alpha/beta, leading dimensions, threads), sgemm_gathered (rows read in place or
// packed), and the tensor API on both backends.
//
// Error bounds (norm-wise relative, ||C - C_ref|| / ||C_ref||):
//   fp32: each output is a sum of k products accumulated in float; with random signs the rounding
//         error grows like sqrt(k) * 2^-24 ~ 2e-6 at k = 4096, so 1e-5 has margin yet catches any
//         wrong element (one misplaced product in 33 already gives ~1e-1).
//   tf32: inputs rounded to 10-bit mantissas (2^-11 relative each): ~5e-4 typical, bound 5e-3.
//   bf16: inputs rounded to 7-bit mantissas (2^-8 each): ~4e-3 typical, bound 2e-2.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "common/backends.h"
#include "common/reference.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace cuface {
namespace {

constexpr double kFp32Bound = 1e-5;

// C = alpha * op(A) * op(B) + beta * C in float64, row-major with leading dimensions; beta == 0
// ignores C (it may hold NaN).
std::vector<double> reference_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                                   const float* a, int64_t lda, const float* b, int64_t ldb, double beta,
                                   const float* c, int64_t ldc) {
  std::vector<double> out(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        sum += av * bv;
      }
      out[size_t(i * n + j)] = alpha * sum + (beta == 0 ? 0.0 : beta * c[i * ldc + j]);
    }
  return out;
}

// The m x n block of a row-major buffer with leading dimension ld, as doubles.
std::vector<double> block(const float* c, int64_t m, int64_t n, int64_t ld) {
  std::vector<double> out(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) out[size_t(i * n + j)] = c[i * ld + j];
  return out;
}

std::vector<float> random_values(int64_t count, uint64_t seed) {
  Tensor t = testing::random_tensor({std::max<int64_t>(count, 1)}, seed);
  return std::vector<float>(t.data<float>(), t.data<float>() + count);
}

// Runs sgemm on random operands (stored with the given padding beyond each row) and returns the
// norm-wise relative error against the float64 reference. Checks that padding is left untouched.
double sgemm_error(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                   int64_t pad = 0, uint64_t seed = 1) {
  const int64_t lda = (trans_a ? m : k) + pad, ldb = (trans_b ? k : n) + pad, ldc = n + pad;
  const std::vector<float> a = random_values((trans_a ? k : m) * lda, seed);
  const std::vector<float> b = random_values((trans_b ? n : k) * ldb, seed + 1);
  std::vector<float> c = random_values(m * ldc, seed + 2);
  if (beta == 0.0f)  // beta == 0 must overwrite C without reading it
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[size_t(i * ldc + j)] = NAN;
  const std::vector<float> before = c;
  const std::vector<double> expected =
      reference_gemm(trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  sgemm(trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = n; j < ldc; ++j)
      EXPECT_EQ(c[size_t(i * ldc + j)], before[size_t(i * ldc + j)]) << "padding at row " << i << " overwritten";
  return testing::relative_error(block(c.data(), m, n, ldc), expected);
}

class SgemmTranspose : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(SgemmTranspose, OddSizesMatchDoubleReference) {
  const auto [trans_a, trans_b] = GetParam();
  for (int64_t m : {1, 7, 33, 257})
    for (int64_t n : {1, 7, 33, 257})
      for (int64_t k : {1, 7, 33, 257})
        EXPECT_LT(sgemm_error(trans_a, trans_b, m, n, k, 1.0f, 0.0f), kFp32Bound) << m << "x" << n << "x" << k;
}

TEST_P(SgemmTranspose, LargerSizesCrossEveryBlockBoundary) {
  const auto [trans_a, trans_b] = GetParam();
  // 300x500x129: several row strips and column blocks; 2100 rows cross the A~ block (MC = 768) on any thread count;
  // k = 800 crosses the depth block (KC <= 384, so beta must apply once); n = 700 crosses NC.
  EXPECT_LT(sgemm_error(trans_a, trans_b, 300, 500, 129, 1.0f, 0.0f), kFp32Bound);
  EXPECT_LT(sgemm_error(trans_a, trans_b, 2100, 40, 800, 0.75f, -0.5f), kFp32Bound);
  EXPECT_LT(sgemm_error(trans_a, trans_b, 30, 700, 400, 1.0f, 1.0f), kFp32Bound);
  // Deep products of a small C (weight gradients) are summed in slices of k: 3 of 1500, 2 of 2050.
  EXPECT_LT(sgemm_error(trans_a, trans_b, 37, 45, 4500, 0.75f, -0.5f, /*pad=*/3), kFp32Bound);
  EXPECT_LT(sgemm_error(trans_a, trans_b, 64, 20, 4100, 1.0f, 0.0f), kFp32Bound);
}

TEST_P(SgemmTranspose, LeadingDimensionsAddressSubMatrices) {
  const auto [trans_a, trans_b] = GetParam();
  EXPECT_LT(sgemm_error(trans_a, trans_b, 37, 45, 29, 1.0f, 0.0f, /*pad=*/5), kFp32Bound);
  EXPECT_LT(sgemm_error(trans_a, trans_b, 130, 67, 400, -1.0f, 0.5f, /*pad=*/3), kFp32Bound);
  // A's rows exactly 4 KiB apart (lda 1024 when A is not transposed): read half a strip at a time,
  // the last of 47 rows a ragged half strip.
  EXPECT_LT(sgemm_error(trans_a, trans_b, 47, 70, 1000, 1.0f, 0.5f, /*pad=*/24), kFp32Bound);
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, SgemmTranspose, ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "At" : "A") +
                                  (std::get<1>(info.param) ? "Bt" : "B");
                         });

TEST(Sgemm, AlphaBetaVariants) {
  for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 0.0f}, {1.0f, 1.0f}, {-2.0f, 0.25f}, {0.0f, 3.0f}})
    EXPECT_LT(sgemm_error(false, false, 45, 70, 50, alpha, beta), kFp32Bound) << alpha << " " << beta;
}

TEST(Sgemm, ZeroDepthScalesC) {
  std::vector<float> c = {1, NAN, 3, 4};
  sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, c.data(), 2);  // beta = 0: zeros, NaN gone
  EXPECT_EQ(c, (std::vector<float>{0, 0, 0, 0}));
  c = {1, 2, 3, 4};
  sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 2.0f, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{2, 4, 6, 8}));
}

class SgemmThreads : public ::testing::TestWithParam<int64_t> {};

// k = 300: C cut into parts; k = 5000: a deep product, summed in slices of k.
TEST_P(SgemmThreads, OneThreadAndInsideAParallelRegionGiveTheSameResult) {
  const int64_t m = 150, n = 90, k = GetParam();
  const std::vector<float> a = random_values(m * k, 11), b = random_values(k * n, 12);
  std::vector<float> team(size_t(m * n)), single(size_t(m * n));
  sgemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, team.data(), n);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  sgemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, single.data(), n);
  omp_set_num_threads(threads);
  EXPECT_EQ(team, single);  // the split changes who computes a tile, not the order of its sums

  // Each thread of an outer region runs its own GEMM (e.g. one per image) on its own output.
  std::vector<std::vector<float>> outputs(4, std::vector<float>(size_t(m * n)));
#pragma omp parallel for num_threads(2)
  for (int i = 0; i < 4; ++i)
    sgemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, outputs[size_t(i)].data(), n);
  for (const auto& out : outputs) EXPECT_EQ(out, single);
}

INSTANTIATE_TEST_SUITE_P(Depths, SgemmThreads, ::testing::Values(300, 5000));

TEST(Sgemm, RejectsBadArguments) {
  float x[4] = {};
  EXPECT_THROW(sgemm(false, false, -1, 2, 2, 1.0f, x, 2, x, 2, 0.0f, x, 2), Error);
  EXPECT_THROW(sgemm(false, false, 2, 2, 2, 1.0f, x, 1, x, 2, 0.0f, x, 2), Error);  // lda < k
  EXPECT_THROW(sgemm(false, true, 2, 2, 3, 1.0f, x, 3, x, 2, 0.0f, x, 2), Error);   // ldb < k
}

// sgemm_gathered: A's rows gathered from a buffer (row i at a given offset, its runs run_stride
// apart), against the float64 reference on the same A written out as a matrix.
double sgemm_gathered_error(bool trans_b, int64_t m, int64_t n, int64_t runs, int64_t run_length,
                            int64_t run_stride, int64_t row_spacing, float alpha, float beta) {
  const int64_t k = runs * run_length, ldb = trans_b ? k : n;
  // Rows overlap like a convolution's receptive fields; every third row jumps ahead (a new image row).
  std::vector<int64_t> offsets(static_cast<size_t>(m));
  for (int64_t i = 1; i < m; ++i) offsets[size_t(i)] = offsets[size_t(i - 1)] + row_spacing + (i % 3 == 0 ? 5 : 0);
  const std::vector<float> source = random_values(offsets.back() + (runs - 1) * run_stride + run_length, 21);
  std::vector<const float*> rows(static_cast<size_t>(m));
  std::vector<float> a(size_t(m * k));
  for (int64_t i = 0; i < m; ++i) {
    rows[size_t(i)] = source.data() + offsets[size_t(i)];
    for (int64_t run = 0; run < runs; ++run)
      for (int64_t q = 0; q < run_length; ++q)
        a[size_t(i * k + run * run_length + q)] = rows[size_t(i)][run * run_stride + q];
  }
  const std::vector<float> b = random_values((trans_b ? n : k) * ldb, 22);
  std::vector<float> c = random_values(m * n, 23);
  const std::vector<double> expected =
      reference_gemm(false, trans_b, m, n, k, alpha, a.data(), k, b.data(), ldb, beta, c.data(), n);
  sgemm_gathered(trans_b, m, n, alpha, GatheredRows{rows.data(), runs, run_length, run_stride}, b.data(), ldb, beta,
                 c.data(), n);
  return testing::relative_error(block(c.data(), m, n, n), expected);
}

TEST(SgemmGathered, MatchesDoubleReference) {
  for (bool trans_b : {false, true}) {
    // Rows close together (read in place): 5 runs of 60 in depth blocks of 3 + 2 runs; runs of 500
    // cut in pieces; several row and column strips, ragged at both edges, beta adding to C.
    EXPECT_LT(sgemm_gathered_error(trans_b, 157, 70, 5, 60, 700, 12, 1.0f, 0.0f), kFp32Bound);
    EXPECT_LT(sgemm_gathered_error(trans_b, 45, 33, 2, 500, 900, 40, -0.5f, 2.0f), kFp32Bound);
    // Rows 1100 floats apart, and exactly 4 KiB apart (read half a strip at a time: L1 would map
    // a whole strip's rows to one set), one run and several.
    EXPECT_LT(sgemm_gathered_error(trans_b, 31, 40, 1, 300, 0, 1100, 1.0f, 0.5f), kFp32Bound);
    EXPECT_LT(sgemm_gathered_error(trans_b, 29, 9, 3, 60, 150, 1024, 0.75f, 0.0f), kFp32Bound);
  }
}

TEST(SgemmGathered, RejectsBadArguments) {
  float x[4] = {};
  const float* rows[1] = {x};
  EXPECT_THROW(sgemm_gathered(false, 1, 2, 1.0f, GatheredRows{rows, 1, -2, 0}, x, 2, 0.0f, x, 2), Error);
  EXPECT_THROW(sgemm_gathered(true, 1, 2, 1.0f, GatheredRows{rows, 1, 2, 0}, x, 1, 0.0f, x, 2), Error);  // ldb < k
}

// ---- tensor API on both backends ----------------------------------------------------------------

class Gemm : public testing::BackendTest {
 protected:
  double bound() {
    if (device() == Device::CPU) return kFp32Bound;  // the CPU always computes in fp32
    switch (ctx().precision()) {
      case Precision::FP32: return kFp32Bound;
      case Precision::TF32: return 5e-3;
      case Precision::BF16: return 2e-2;
    }
    return 0;
  }
  // Any f32/bf16 tensor, as a CPU f32 tensor.
  Tensor host_f32(const Tensor& t) {
    if (t.dtype() == DType::F32) return t.to(Device::CPU);
    Tensor f = Tensor::empty(t.shape(), DType::F32, t.device());
    cast(ctx(), t, f);
    return f.to(Device::CPU);
  }
  // Runs gemm with the tensors on this backend and returns the relative error.
  double error(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, float beta,
               DType input_dtype = DType::F32, DType output_dtype = DType::F32) {
    Tensor a = testing::random_tensor({trans_a ? k : m, trans_a ? m : k}, 21);
    Tensor b = testing::random_tensor({trans_b ? n : k, trans_b ? k : n}, 22);
    Tensor c0 = testing::random_tensor({m, n}, 23);
    auto on_device = [&](const Tensor& t, DType dtype) {
      Tensor there = t.to(device());
      if (dtype == DType::F32) return there;
      Tensor converted = Tensor::empty(t.shape(), dtype, device());
      cast(ctx(), there, converted);
      return converted;
    };
    Tensor da = on_device(a, input_dtype), db = on_device(b, input_dtype);
    Tensor dc = on_device(c0, output_dtype);
    if (beta == 0.0f) {
      if (output_dtype == DType::F32) {
        testing::poison(dc);  // every output must be written, and C's old NaN must not leak in
      } else {
        Tensor nan = Tensor::empty(dc.shape(), DType::F32, device());
        testing::poison(nan);
        cast(ctx(), nan, dc);
      }
    }
    const Tensor c_start = host_f32(dc);  // what the kernel sees (bf16-rounded when C is bf16)
    gemm(ctx(), trans_a, trans_b, alpha, da, db, beta, dc);
    ctx().synchronize();
    const Tensor result = host_f32(dc);
    const std::vector<double> expected = reference_gemm(trans_a, trans_b, m, n, k, alpha, a.data<float>(),
                                                        trans_a ? m : k, b.data<float>(), trans_b ? k : n, beta,
                                                        c_start.data<float>(), n);
    return testing::relative_error(testing::to_doubles(result), expected);
  }
};

TEST_P(Gemm, EveryPrecisionMatchesDoubleReference) {
  for (Precision precision : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    ctx().set_precision(precision);
    for (auto [ta, tb] : {std::pair{false, false}, {false, true}, {true, false}, {true, true}}) {
      EXPECT_LT(error(ta, tb, 33, 65, 129, 1.0f, 0.0f), bound()) << precision_name(precision) << " " << ta << tb;
      EXPECT_LT(error(ta, tb, 300, 500, 129, 0.5f, 2.0f), bound()) << precision_name(precision) << " " << ta << tb;
    }
    EXPECT_LT(error(false, false, 1, 7, 257, 1.0f, 0.0f), bound()) << precision_name(precision);
  }
}

TEST_P(Gemm, Bf16TensorsOnCuda) {
  if (device() == Device::CPU) GTEST_SKIP() << "bf16 operands are a CUDA feature (the CPU GEMM is f32)";
  ctx().set_precision(Precision::BF16);
  EXPECT_LT(error(false, true, 70, 90, 200, 1.0f, 0.0f, DType::BF16, DType::F32), 2e-2);
  // bf16 output: the result itself is rounded to 8 bits (2^-9 relative) on top of the inputs' error.
  EXPECT_LT(error(true, false, 70, 90, 200, 1.0f, 1.0f, DType::BF16, DType::BF16), 2e-2);
  EXPECT_LT(error(false, false, 33, 40, 50, 1.0f, 0.0f, DType::F32, DType::BF16), 2e-2);
  // A bf16 C under fp32 precision: cuBLAS has no f32 x f32 -> bf16 GEMM, so the inputs go in as bf16.
  ctx().set_precision(Precision::FP32);
  EXPECT_LT(error(false, true, 70, 90, 200, 1.0f, 0.5f, DType::F32, DType::BF16), 2e-2);
  EXPECT_LT(error(true, false, 33, 40, 50, 1.0f, 0.0f, DType::F32, DType::BF16), 2e-2);
}

TEST_P(Gemm, EmptyProductsScaleC) {
  auto t = [&](Shape s) { return Tensor::zeros(s, DType::F32, device()); };
  Tensor c = testing::random_tensor({3, 5}, 5).to(device());
  const Tensor before = c.to(Device::CPU);
  gemm(ctx(), false, false, 1.0f, t({3, 0}), t({0, 5}), 2.0f, c);  // k = 0: C = beta * C
  const Tensor after = c.to(Device::CPU);
  for (int64_t i = 0; i < 15; ++i) ASSERT_EQ(after.data<float>()[i], 2.0f * before.data<float>()[i]) << i;
  Tensor none = t({0, 5});
  EXPECT_NO_THROW(gemm(ctx(), false, false, 1.0f, t({0, 4}), t({4, 5}), 0.0f, none));  // m = 0: nothing to do
}

TEST_P(Gemm, RejectsBadShapesWithTheirNames) {
  auto t = [&](Shape s) { return Tensor::zeros(s, DType::F32, device()); };
  Tensor c = t({3, 5});
  auto message = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  // inner dimensions: A [3, 4] times B [6, 5]
  std::string what = message([&] { gemm(ctx(), false, false, 1.0f, t({3, 4}), t({6, 5}), 0.0f, c); });
  EXPECT_NE(what.find("inner dimensions"), std::string::npos) << what;
  EXPECT_NE(what.find("[3, 4]"), std::string::npos) << what;
  EXPECT_NE(what.find("[6, 5]"), std::string::npos) << what;
  // C of the wrong shape, wrong ranks, transposes taken into account
  what = message([&] { gemm(ctx(), true, false, 1.0f, t({3, 4}), t({3, 5}), 0.0f, c); });  // op(A) is [4, 3]
  EXPECT_NE(what.find("C must be [4, 5]"), std::string::npos) << what;
  EXPECT_THROW(gemm(ctx(), false, false, 1.0f, t({2, 3, 4}), t({2, 4, 5}), 0.0f, c), Error);
  EXPECT_THROW(gemm(ctx(), false, true, 1.0f, t({3, 4}), t({4, 5}), 0.0f, c), Error);
  if (device() == Device::CPU) {
    Tensor half = Tensor::zeros({3, 4}, DType::BF16);
    what = message([&] { gemm(ctx(), false, false, 1.0f, half, t({4, 5}), 0.0f, c); });
    EXPECT_NE(what.find("CPU operands must be f32"), std::string::npos) << what;
  } else {
    what = message([&] { gemm(ctx(), false, false, 1.0f, Tensor::zeros({3, 4}), t({4, 5}), 0.0f, c); });
    EXPECT_NE(what.find("different devices"), std::string::npos) << what;
  }
}

CUFACE_ON_EVERY_BACKEND(Gemm);

// The class-sharded head's three GEMMs at production size: N x ranks rows against C_r = 2M classes
// make [R, C_r] matrices of more than 2^31 elements (2048 x 2M), which cuBLAS's 32-bit API reaches
// with int sizes and leading dimensions only. Here m n = 2.16e9 > 2^31: C = A B^T (logits), then
// C B = A (B^T B) (dx) and C^T A = B (A^T A) (dW), which read all of C; checked in float64 on the host.
TEST(GemmCuda, MatricesOfMoreThanTwoToThe31Elements) {
  CUFACE_REQUIRE_GPU();
  const int64_t m = 1100, n = 1960000, k = 8;
  Tensor c;
  try {
    c = Tensor::empty({m, n}, DType::F32, Device::CUDA);  // 8.6 GB
  } catch (const Error&) {
    GTEST_SKIP() << "needs 9 GB of free GPU memory";
  }
  Context gpu(Device::CUDA);  // fp32
  const Tensor a = testing::random_tensor({m, k}, 31), b = testing::random_tensor({n, k}, 32);
  const Tensor a_gpu = a.to(Device::CUDA), b_gpu = b.to(Device::CUDA);
  Tensor ca = Tensor::empty({m, k}, DType::F32, Device::CUDA), cb = Tensor::empty({n, k}, DType::F32, Device::CUDA);
  gemm(gpu, false, true, 1.0f, a_gpu, b_gpu, 0.0f, c);
  gemm(gpu, false, false, 1.0f, c, b_gpu, 0.0f, ca);
  gemm(gpu, true, false, 1.0f, c, a_gpu, 0.0f, cb);
  const Tensor last_row = c.slice(m - 1, m).to(Device::CPU);  // elements past 2^31

  // Gram matrices in float64: G_a = A^T A, G_b = B^T B.
  auto gram = [&](const Tensor& x) {
    std::vector<double> g(size_t(k * k), 0.0);
    const float* p = x.data<float>();
    for (int64_t r = 0; r < x.size(0); ++r)
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j) g[size_t(i * k + j)] += double(p[r * k + i]) * p[r * k + j];
    return g;
  };
  auto times = [&](const Tensor& x, const std::vector<double>& g) {  // x [rows, k] times g [k, k]
    std::vector<double> out(size_t(x.numel()), 0.0);
    const float* p = x.data<float>();
    for (int64_t r = 0; r < x.size(0); ++r)
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j) out[size_t(r * k + j)] += double(p[r * k + i]) * g[size_t(i * k + j)];
    return out;
  };
  std::vector<double> expected_row(size_t(n), 0.0);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t p = 0; p < k; ++p)
      expected_row[size_t(j)] += double(a.data<float>()[(m - 1) * k + p]) * b.data<float>()[j * k + p];
  EXPECT_LT(testing::relative_error(testing::to_doubles(last_row), expected_row), kFp32Bound) << "C's last row";
  // C B sums 1.96M products per element in fp32 (B^T B's diagonal terms all positive): rounding ~5e-5
  // relative, so 1e-3; C's last 4.6 rows (past 2^31) read from a wrapped address would put a few
  // percent of error into either product.
  EXPECT_LT(testing::relative_error(testing::to_doubles(ca.to(Device::CPU)), times(a, gram(b))), 1e-3) << "C B";
  EXPECT_LT(testing::relative_error(testing::to_doubles(cb.to(Device::CPU)), times(b, gram(a))), 1e-4) << "C^T A";
}

}  // namespace
}  // namespace cuface
