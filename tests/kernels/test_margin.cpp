#include <gtest/gtest.h>

#include <random>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/margin_reference.h"
#include "common/reference.h"
#include "kernels/margin.h"
#include "kernels/margin_unfused.h"

namespace cuface {
namespace {

using testing::all_margins;
using testing::describe;

using testing::reference_margin;

// Random cosines in [-0.6, 0.6]; the target cosine of each row walks through [-0.98, 0.98], so some
// rows have theta + m > pi (ArcFace fallback) and some are nearly solved, none sits on a kink of a
// margin function (0 for easy margin). Every 5th row is ignored.
struct CosBatch {
  Tensor cos, labels;
  std::vector<double> cos64;
  std::vector<int> labels64;
};
CosBatch make_batch(int64_t n, int64_t c, uint64_t seed, bool with_ignored = true) {
  CosBatch b;
  b.cos = testing::random_tensor({n, c}, seed, -0.6f, 0.6f);
  b.labels = Tensor::empty({n}, DType::I32);
  std::mt19937_64 rng(seed + 1);
  for (int64_t i = 0; i < n; ++i) {
    const int label = int(rng() % uint64_t(c));
    b.labels.data<int32_t>()[i] = with_ignored && i % 5 == 3 ? -1 : label;
    b.cos.data<float>()[i * c + label] = -0.98f + 1.96f * (float(i) + 0.3f) / float(n);
  }
  b.cos64 = testing::to_doubles(b.cos);
  for (int64_t i = 0; i < n; ++i) b.labels64.push_back(b.labels.data<int32_t>()[i]);
  return b;
}

TEST(MarginTarget, MatchesTheFormulasAndTheirDerivatives) {
  for (const MarginParams& p : all_margins()) {
    for (double c = -0.999; c < 0.999; c += 0.0173) {
      // Skip the kinks, where the derivative jumps: ArcFace's fallback boundary and easy margin's 0.
      if (p.type == MarginType::ArcFace && std::abs(c - (p.easy_margin ? 0.0 : -std::cos(p.m))) < 1e-3) continue;
      const MarginTarget t = margin_target(p, float(c));
      const double h = 1e-6;
      const double slope = (reference_margin(p, c + h) - reference_margin(p, c - h)) / (2 * h);
      EXPECT_NEAR(t.value, reference_margin(p, double(float(c))), 2e-6) << describe(p) << " c=" << c;
      EXPECT_NEAR(t.slope, slope, 2e-4 * std::max(1.0, std::abs(slope))) << describe(p) << " c=" << c;
    }
  }
  // The ArcFace fallback where theta + m > pi: s (cos - m sin m), slope 1.
  const MarginParams arc = default_margin_params(MarginType::ArcFace);
  const MarginTarget t = margin_target(arc, -0.95f);
  EXPECT_NEAR(t.value, -0.95 - 0.5 * std::sin(0.5), 1e-6);
  EXPECT_EQ(t.slope, 1.0f);
  // At c = 1 exactly the derivative would be infinite: it stays finite.
  EXPECT_TRUE(std::isfinite(margin_target(default_margin_params(MarginType::Combined), 1.0f).slope));
}

TEST(MarginParams, ParsesNamesAndDefaults) {
  EXPECT_EQ(parse_margin_type("cosface"), MarginType::CosFace);
  EXPECT_EQ(default_margin_params(MarginType::CosFace).m, 0.35f);
  EXPECT_EQ(default_margin_params(MarginType::ArcFace).m, 0.5f);
  EXPECT_EQ(default_margin_params(MarginType::ArcFace).s, 64.0f);
  EXPECT_THROW(parse_margin_type("sphereface"), Error);
}

TEST(MarginSoftmaxCe, CpuMatchesFloat64Reference) {
  Context ctx(Device::CPU);
  for (const MarginParams& p : all_margins()) {
    const int64_t n = 23, c = 1001;  // C a multiple of nothing useful
    CosBatch b = make_batch(n, c, 17);
    Tensor row_stats = Tensor::empty({n, kRowStatColumns});
    testing::poison(row_stats);
    margin_softmax_ce(ctx, b.cos, b.labels, p, row_stats);
    const testing::ReferenceResult ref = testing::reference_margin_ce(b.cos64, n, c, b.labels64, p);

    EXPECT_LT(testing::relative_error(testing::to_doubles(b.cos), ref.dcos), 1e-5) << describe(p);
    for (int64_t i = 0; i < n; ++i) {
      const float* r = row_stats.data<float>() + i * kRowStatColumns;
      EXPECT_NEAR(r[0], ref.row_loss[size_t(i)], 1e-5 * std::max(1.0, ref.row_loss[size_t(i)])) << describe(p) << i;
      EXPECT_EQ(r[1], float(ref.correct[size_t(i)])) << i;
      EXPECT_EQ(r[2], b.labels64[size_t(i)] < 0 ? 0.0f : float(b.cos64[size_t(i * c + b.labels64[size_t(i)])]));
      if (b.labels64[size_t(i)] < 0) {
        for (int64_t j = 0; j < c; ++j) ASSERT_EQ(b.cos.data<float>()[i * c + j], 0.0f);  // ignored: no gradient
      }
    }
    Tensor stats = Tensor::empty({kStatCount});
    reduce_row_stats(ctx, b.labels, row_stats, stats);
    EXPECT_NEAR(stats.data<float>()[0], ref.loss, 1e-5 * ref.loss) << describe(p);
    EXPECT_EQ(stats.data<float>()[3], float(ref.labelled));
  }
}

TEST(MarginSoftmaxCe, AccuracyUsesRawCosinesAndAllIgnoredGivesZero) {
  Context ctx(Device::CPU);
  // Row 0: the target (class 1) has the largest raw cosine but loses after the margin: still correct.
  Tensor cos = Tensor::empty({2, 3});
  const float values[6] = {0.50f, 0.52f, 0.1f, 0.9f, 0.2f, 0.1f};
  std::copy(values, values + 6, cos.data<float>());
  Tensor labels = Tensor::empty({2}, DType::I32);
  labels.data<int32_t>()[0] = 1;
  labels.data<int32_t>()[1] = 2;
  Tensor row_stats = Tensor::empty({2, kRowStatColumns}), stats = Tensor::empty({kStatCount});
  margin_softmax_ce(ctx, cos, labels, default_margin_params(MarginType::ArcFace), row_stats);
  reduce_row_stats(ctx, labels, row_stats, stats);
  EXPECT_EQ(row_stats.data<float>()[1], 1.0f);
  EXPECT_EQ(row_stats.data<float>()[kRowStatColumns + 1], 0.0f);
  EXPECT_EQ(stats.data<float>()[1], 0.5f);
  EXPECT_NEAR(stats.data<float>()[2], (0.52f + 0.1f) / 2, 1e-7);

  labels.data<int32_t>()[0] = labels.data<int32_t>()[1] = -1;
  std::copy(values, values + 6, cos.data<float>());
  margin_softmax_ce(ctx, cos, labels, default_margin_params(MarginType::ArcFace), row_stats);
  reduce_row_stats(ctx, labels, row_stats, stats);
  for (int k = 0; k < kStatCount; ++k) EXPECT_EQ(stats.data<float>()[k], 0.0f);
  for (int k = 0; k < 6; ++k) EXPECT_EQ(cos.data<float>()[k], 0.0f);

  labels.data<int32_t>()[0] = 3;  // out of range
  EXPECT_THROW(margin_softmax_ce(ctx, cos, labels, default_margin_params(MarginType::ArcFace), row_stats), Error);
}

// The benchmark's baseline chain computes the same numbers as the fused kernel.
class MarginUnfused : public testing::BackendTest {};

TEST_P(MarginUnfused, MatchesFusedKernel) {
  for (const MarginParams& p : all_margins()) {
    const int64_t n = 19, c = 1003;
    CosBatch b = make_batch(n, c, 29);
    Tensor fused = b.cos.clone(), fused_rows = Tensor::empty({n, kRowStatColumns});
    margin_softmax_ce(ctx(), fused, b.labels, p, fused_rows);
    Tensor unfused = b.cos.to(device()), unfused_rows = Tensor::empty({n, kRowStatColumns}, DType::F32, device());
    margin_softmax_ce_unfused(ctx(), unfused, b.labels.to(device()), p, unfused_rows);
    ctx().synchronize();
    EXPECT_LT(testing::relative_error(unfused, fused), 1e-5) << describe(p);
    EXPECT_LT(testing::relative_error(unfused_rows, fused_rows), 1e-5) << describe(p);
  }
}

CUFACE_ON_EVERY_BACKEND(MarginUnfused);

// CUDA against the CPU twin, over the shapes (and one C so large that the row no longer fits
// the shared memory of a full cluster, which takes the uncached path).
struct Shape2 {
  int64_t n, c;
};
class MarginCudaVsCpu : public ::testing::TestWithParam<Shape2> {};

// The fused kernel on the GPU and on the CPU, every margin, n rows of c classes.
void expect_cuda_matches_cpu(int64_t n, int64_t c) {
  Context cpu_ctx(Device::CPU), gpu_ctx(Device::CUDA);
  for (const MarginParams& p : all_margins()) {
    CosBatch b = make_batch(n, c, uint64_t(n * 7 + c), n > 1);
    Tensor gpu_cos = b.cos.to(Device::CUDA), gpu_labels = b.labels.to(Device::CUDA);
    Tensor gpu_rows = Tensor::empty({n, kRowStatColumns}, DType::F32, Device::CUDA);
    Tensor gpu_stats = Tensor::empty({kStatCount}, DType::F32, Device::CUDA);
    testing::poison(gpu_rows);
    margin_softmax_ce(gpu_ctx, gpu_cos, gpu_labels, p, gpu_rows);
    reduce_row_stats(gpu_ctx, gpu_labels, gpu_rows, gpu_stats);
    gpu_ctx.synchronize();

    Tensor cpu_rows = Tensor::empty({n, kRowStatColumns}), cpu_stats = Tensor::empty({kStatCount});
    margin_softmax_ce(cpu_ctx, b.cos, b.labels, p, cpu_rows);
    reduce_row_stats(cpu_ctx, b.labels, cpu_rows, cpu_stats);

    Tensor gs = gpu_stats.to(Device::CPU);
    const float* cs = cpu_stats.data<float>();
    EXPECT_LT(std::abs(gs.data<float>()[0] - cs[0]), 1e-5 * std::abs(cs[0])) << describe(p);
    EXPECT_EQ(gs.data<float>()[1], cs[1]) << describe(p);
    EXPECT_NEAR(gs.data<float>()[2], cs[2], 1e-6) << describe(p);
    EXPECT_EQ(gs.data<float>()[3], cs[3]);
    EXPECT_LT(testing::relative_error(gpu_rows, cpu_rows), 1e-5) << describe(p);
    EXPECT_LT(testing::relative_error(gpu_cos, b.cos), 5e-5) << describe(p);
  }
}

TEST_P(MarginCudaVsCpu, LossAndGradientsAgree) {
  CUFACE_REQUIRE_GPU();
  // 128 rows of 100k classes take the paths that 7 rows do (slices, clusters, an uncached row); on the
  // emulator, which runs blocks one after another, they were a fifth of CI's emulated test time.
  if (testing::kEmulatedCuda && GetParam().n * GetParam().c > 5'000'000)
    GTEST_SKIP() << "emulated: the same kernel paths as N7 of the same classes; a real GPU runs this size";
  expect_cuda_matches_cpu(GetParam().n, GetParam().c);
}

// A binary built for sm_80 only runs its PTX on an H100: the device has clusters, the kernel's code
// does not (its cluster branch is compiled out), so one slice per row must be launched. The emulator
// stands in for such a binary with CUFACE_EMU_CODE_VERSION=80 (cudaFuncGetAttributes' ptxVersion 80,
// cluster launches refused); the kernel chose clusters from the device alone and failed there.
TEST(MarginCuda, ABinaryWithoutSm90CodeRunsWithoutClusters) {
  CUFACE_REQUIRE_GPU();
  if (!testing::kEmulatedCuda) GTEST_SKIP() << "a real binary's architectures are fixed when it is built";
  setenv("CUFACE_EMU_CODE_VERSION", "80", 1);
  expect_cuda_matches_cpu(3, 100003);  // two or more slices per row where clusters are used
  unsetenv("CUFACE_EMU_CODE_VERSION");
}

INSTANTIATE_TEST_SUITE_P(Shapes, MarginCudaVsCpu,
                         ::testing::Values(Shape2{1, 10}, Shape2{1, 1000}, Shape2{1, 100003}, Shape2{7, 10},
                                           Shape2{7, 1000}, Shape2{7, 100003}, Shape2{128, 10}, Shape2{128, 1000},
                                           Shape2{128, 100003}, Shape2{2, 500009},
                                           // 48 KiB of cached slice + the kernel's static shared memory:
                                           // one slice (sm_80, sm_90), two slices (sm_90)
                                           Shape2{3, 12288}, Shape2{3, 24576}),
                         [](const ::testing::TestParamInfo<Shape2>& info) {
                           return "N" + std::to_string(info.param.n) + "_C" + std::to_string(info.param.c);
                         });


// The GPU cannot throw on a bad label: its row becomes NaN (so the logged loss shows it), a -1 row
// stays zero, and the other rows stay finite; with one slice per row and with a cluster of slices.
TEST(MarginCuda, BadLabelsPoisonOnlyTheirRows) {
  CUFACE_REQUIRE_GPU();
  Context gpu(Device::CUDA);
  for (const int64_t c : {int64_t(50), int64_t(100003)}) {
    CosBatch b = make_batch(5, c, 11, false);
    const int32_t labels[5] = {-1, -2, int32_t(c), 7, int32_t(c - 1)};
    for (int64_t i = 0; i < 5; ++i) b.labels.data<int32_t>()[i] = labels[i];
    Tensor cos = b.cos.to(Device::CUDA), gpu_labels = b.labels.to(Device::CUDA);
    Tensor rows = Tensor::empty({5, kRowStatColumns}, DType::F32, Device::CUDA);
    testing::poison(rows);
    margin_softmax_ce(gpu, cos, gpu_labels, MarginParams{}, rows);
    gpu.synchronize();
    testing::expect_rows_by_label(cos, rows, b.labels, c);
  }
}

// A non-finite cosine (diverged weights) makes its row's loss non-finite, whether it is one other
// class, the target or the whole row, so the trainer's NaN stop sees it; the other rows stay finite.
// The GPU's partial sums once dropped the NaN of a slice without a finite value: a row of NaN
// cosines gave the loss 0.
void expect_nonfinite_cosines_poison_their_rows(Device device, int64_t c) {
  Context ctx(device);
  CosBatch b = make_batch(5, c, 13, false);
  float* cos = b.cos.data<float>();
  const int32_t* labels = b.labels.data<int32_t>();
  cos[1 * c + (labels[1] + 1) % c] = NAN;
  for (int64_t j = 0; j < c; ++j) cos[2 * c + j] = NAN;
  cos[3 * c + labels[3]] = NAN;
  cos[4 * c + (labels[4] + 1) % c] = INFINITY;
  Tensor z = b.cos.to(device), y = b.labels.to(device);
  Tensor rows = Tensor::empty({5, kRowStatColumns}, DType::F32, device);
  testing::poison(rows);
  margin_softmax_ce(ctx, z, y, MarginParams{}, rows);
  ctx.synchronize();
  const Tensor r = rows.to(Device::CPU);
  EXPECT_TRUE(std::isfinite(r.data<float>()[0])) << "row 0: " << r.data<float>()[0];
  for (int64_t i = 1; i < 5; ++i)
    EXPECT_FALSE(std::isfinite(r.data<float>()[i * kRowStatColumns])) << "row " << i << " of C " << c << " on "
                                                                       << device_name(device);
}

TEST(MarginSoftmaxCe, NonFiniteCosinesPoisonTheirRows) { expect_nonfinite_cosines_poison_their_rows(Device::CPU, 50); }

TEST(MarginCuda, NonFiniteCosinesPoisonTheirRows) {
  CUFACE_REQUIRE_GPU();
  for (const int64_t c : {int64_t(50), int64_t(100003)}) expect_nonfinite_cosines_poison_their_rows(Device::CUDA, c);
}

}  // namespace
}  // namespace cuface
