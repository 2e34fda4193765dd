#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "common/backends.h"
#include "common/conv_pool_reference.h"
#include "common/device_compare.h"
#include "engine/context.h"
#include "kernels/conv.h"
#include "kernels/cpu/winograd.h"

namespace cuface {
namespace {

using testing::ConvProblem;

Conv2dGeometry geometry(int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w) {
  Conv2dGeometry g;
  g.stride_h = stride_h, g.stride_w = stride_w, g.pad_h = pad_h, g.pad_w = pad_w;
  return g;
}

// Odd sizes on purpose: no extent is a multiple of a vector width, batch 1 and 3, every code path
// (direct 1x1 GEMM, im2col with and without stride and padding, taps outside the image, column
// slabs of one or several kernel rows; forward: gathered rows read in place or packed, depth blocks
// of several kernel rows or of pieces of one).
const std::vector<ConvProblem> kProblems = {
    //  N   H   W   C   O  KH  KW  geometry
    {3, 5, 7, 13, 6, 1, 1, Conv2dGeometry(1, 0)},   // 1x1 stride 1: the direct GEMM, no im2col
    {1, 7, 6, 5, 9, 1, 1, Conv2dGeometry(2, 0)},    // 1x1 stride 2 (ResNet's downsample)
    {2, 3, 4, 3, 2, 1, 1, Conv2dGeometry(1, 1)},    // 1x1 with padding: not the direct path
    {3, 6, 5, 7, 11, 3, 3, Conv2dGeometry(1, 1)},   // 3x3, same size
    {1, 9, 8, 6, 5, 3, 3, Conv2dGeometry(2, 1)},    // 3x3 stride 2
    {3, 11, 13, 3, 8, 7, 7, Conv2dGeometry(2, 3)},  // the 7x7 stride-2 stem
    {2, 7, 9, 4, 3, 3, 5, geometry(2, 1, 0, 2)},    // non-square kernel, stride and padding
    {1, 3, 2, 2, 3, 5, 5, Conv2dGeometry(1, 2)},    // kernel larger than the image
    // Deep enough (KW * C > 256) to be built in slabs of kernel rows: 3 slabs of one row; then
    // slabs of 2, 2 and 1 rows with a vertical stride.
    {2, 5, 6, 90, 7, 3, 3, Conv2dGeometry(1, 1)},
    {1, 9, 6, 70, 5, 5, 3, geometry(2, 1, 2, 1)},
    // Forward depth blocks: 3 + 2 kernel rows of 60 floats; kernel rows of 390 floats cut in pieces.
    {1, 6, 7, 20, 5, 5, 3, Conv2dGeometry(1, 2)},
    {1, 4, 5, 130, 6, 3, 3, Conv2dGeometry(1, 1)},
    // Receptive fields 4 KiB or more apart (stride_w * C >= 1024 floats): packed, not read in place;
    // one depth block of 3 kernel rows of 64 floats, then kernel rows of 1560 floats cut in pieces.
    {1, 5, 33, 64, 3, 3, 1, geometry(1, 16, 1, 0)},
    {1, 5, 5, 520, 4, 3, 3, Conv2dGeometry(2, 1)},
    // 3x3, stride 1, padding 1 with at least 128 output blocks of 2x2: Winograd (kernels/cpu/winograd.h).
    // Odd extents (the last blocks half outside), even ones, 1x1 images (3 of 4 patch rows outside),
    // and ResNet-like channel counts. The smaller 3x3 same-size problems above stay direct.
    {2, 15, 17, 7, 5, 3, 3, Conv2dGeometry(1, 1)},
    {2, 16, 16, 33, 20, 3, 3, Conv2dGeometry(1, 1)},
    {130, 1, 1, 3, 4, 3, 3, Conv2dGeometry(1, 1)},
    {9, 8, 7, 64, 48, 3, 3, Conv2dGeometry(1, 1)},
};

// Element-wise: the Higham bound for the number of summed terms (conv_pool_reference.h). Norm-wise:
// fp32 sums of at most a few hundred products land near 1e-7; 1e-5 leaves room without hiding bugs.
constexpr double kNormBound = 1e-5;

int64_t backward_data_terms(const ConvProblem& p) { return p.o + p.kh * p.kw + 2; }

TEST(ConvCpu, ForwardMatchesFloat64Reference) {
  Context ctx(Device::CPU);
  for (const ConvProblem& p : kProblems) {
    const Tensor x = testing::random_tensor(p.x_shape(), 1);
    const Tensor w = testing::random_tensor(p.w_shape(), 2);
    Tensor y = Tensor::empty(p.y_shape());
    testing::poison(y);
    conv2d_forward(ctx, x, w, y, p.g);
    testing::expect_matches_reference(y, testing::conv2d_forward_reference(p, x, w), p.kh * p.kw * p.c + 2, kNormBound,
                                      "forward " + p.str());
  }
}

TEST(ConvCpu, BackwardDataMatchesFloat64Reference) {
  Context ctx(Device::CPU);
  for (const ConvProblem& p : kProblems) {
    const Tensor dy = testing::random_tensor(p.y_shape(), 3);
    const Tensor w = testing::random_tensor(p.w_shape(), 4);
    Tensor dx = Tensor::empty(p.x_shape());
    testing::poison(dx);
    conv2d_backward_data(ctx, dy, w, dx, p.g);
    testing::expect_matches_reference(dx, testing::conv2d_backward_data_reference(p, dy, w), backward_data_terms(p),
                                      kNormBound, "backward data " + p.str());
  }
}

TEST(ConvCpu, BackwardFilterAccumulatesTheFloat64Reference) {
  Context ctx(Device::CPU);
  for (const ConvProblem& p : kProblems) {
    const Tensor x = testing::random_tensor(p.x_shape(), 5);
    const Tensor dy = testing::random_tensor(p.y_shape(), 6);
    const Tensor initial = testing::random_tensor(p.w_shape(), 7);
    Tensor dw = initial.clone();
    conv2d_backward_filter(ctx, x, dy, dw, p.g);
    testing::expect_matches_reference(dw, testing::conv2d_backward_filter_reference(p, x, dy, initial),
                                      p.n * p.oh() * p.ow() + 2, kNormBound, "backward filter " + p.str());
  }
}

// A batch whose buffers exceed one chunk: padding one row only keeps it off Winograd, so the forward
// pass pads 2 images per chunk (~16 MiB), then a ragged 1, and the backward passes build the column
// slab of one image at a time; with padding 1 all round, Winograd transforms one image per chunk
// (~32 MiB) and the filter gradient adds the chunks' products.
class ConvCpuChunks : public ::testing::TestWithParam<Conv2dGeometry> {};

TEST_P(ConvCpuChunks, BatchSplitIntoSeveralChunks) {
  Context ctx(Device::CPU);
  const ConvProblem p{3, 120, 120, 100, 2, 3, 3, GetParam()};
  const Tensor x = testing::random_tensor(p.x_shape(), 8);
  const Tensor w = testing::random_tensor(p.w_shape(), 9);
  const Tensor dy = testing::random_tensor(p.y_shape(), 10);
  Tensor y = Tensor::empty(p.y_shape()), dx = Tensor::empty(p.x_shape()), dw = Tensor::zeros(p.w_shape());
  testing::poison(y);
  testing::poison(dx);
  conv2d_forward(ctx, x, w, y, p.g);
  conv2d_backward_data(ctx, dy, w, dx, p.g);
  conv2d_backward_filter(ctx, x, dy, dw, p.g);
  testing::expect_matches_reference(y, testing::conv2d_forward_reference(p, x, w), p.kh * p.kw * p.c + 2, kNormBound,
                                    "forward");
  testing::expect_matches_reference(dx, testing::conv2d_backward_data_reference(p, dy, w), backward_data_terms(p),
                                    kNormBound, "backward data");
  testing::expect_matches_reference(dw, testing::conv2d_backward_filter_reference(p, x, dy, Tensor::zeros(p.w_shape())),
                                    p.n * p.oh() * p.ow() + 2, kNormBound, "backward filter");
}
INSTANTIATE_TEST_SUITE_P(Geometries, ConvCpuChunks,
                         ::testing::Values(geometry(1, 1, 1, 0), Conv2dGeometry(1, 1)),
                         [](const auto& info) { return info.param.pad_w == 0 ? "Im2col" : "Winograd"; });

// The Winograd passes themselves, on problems too small for conv.cpp to send them there, and the rule
// that does.
TEST(ConvCpuWinograd, PassesMatchFloat64ReferenceAtAnySize) {
  const std::vector<ConvProblem> problems = {
      {1, 1, 1, 1, 1, 3, 3, Conv2dGeometry(1, 1)},
      {1, 2, 3, 5, 2, 3, 3, Conv2dGeometry(1, 1)},
      {3, 5, 4, 6, 7, 3, 3, Conv2dGeometry(1, 1)},
  };
  for (const ConvProblem& p : problems) {
    const Tensor x = testing::random_tensor(p.x_shape(), 11), w = testing::random_tensor(p.w_shape(), 12);
    const Tensor dy = testing::random_tensor(p.y_shape(), 13), initial = testing::random_tensor(p.w_shape(), 14);
    Tensor y = Tensor::empty(p.y_shape()), dx = Tensor::empty(p.x_shape()), dw = initial.clone();
    testing::poison(y);
    testing::poison(dx);
    cpu::winograd_forward(x, w, y);
    cpu::winograd_backward_data(dy, w, dx);
    cpu::winograd_backward_filter(x, dy, dw);
    testing::expect_matches_reference(y, testing::conv2d_forward_reference(p, x, w), p.kh * p.kw * p.c + 2, kNormBound,
                                      "forward " + p.str());
    testing::expect_matches_reference(dx, testing::conv2d_backward_data_reference(p, dy, w), backward_data_terms(p),
                                      kNormBound, "backward data " + p.str());
    testing::expect_matches_reference(dw, testing::conv2d_backward_filter_reference(p, x, dy, initial),
                                      p.n * p.oh() * p.ow() + 2, kNormBound, "backward filter " + p.str());
  }
}

TEST(ConvCpuWinograd, TakesSameSize3x3ConvolutionsWithEnoughBlocks) {
  const Shape w{64, 3, 3, 64};
  EXPECT_TRUE(cpu::winograd_applies({8, 28, 28, 64}, w, Conv2dGeometry(1, 1)));   // 8 x 196 blocks
  EXPECT_TRUE(cpu::winograd_applies({2, 15, 17, 64}, w, Conv2dGeometry(1, 1)));   // 2 x 8 x 9 = 144
  EXPECT_FALSE(cpu::winograd_applies({8, 4, 4, 64}, w, Conv2dGeometry(1, 1)));    // 32 blocks
  EXPECT_FALSE(cpu::winograd_applies({8, 28, 28, 64}, w, Conv2dGeometry(2, 1)));  // stride 2
  EXPECT_FALSE(cpu::winograd_applies({8, 28, 28, 64}, w, Conv2dGeometry(1, 0)));  // no padding
  EXPECT_FALSE(cpu::winograd_applies({8, 28, 28, 64}, {64, 1, 1, 64}, Conv2dGeometry(1, 1)));
  EXPECT_FALSE(cpu::winograd_applies({8, 28, 28, 64}, {64, 3, 1, 64}, geometry(1, 1, 1, 1)));
}

TEST(ConvCpu, RejectsMismatchedArguments) {
  Context ctx(Device::CPU);
  const Tensor x = Tensor::zeros({2, 5, 5, 3});
  const Tensor w = Tensor::zeros({4, 3, 3, 3});
  Tensor y = Tensor::zeros({2, 3, 3, 4});
  EXPECT_NO_THROW(conv2d_forward(ctx, x, w, y, Conv2dGeometry(1, 0)));
  Tensor wrong_y = Tensor::zeros({2, 5, 5, 4});
  EXPECT_THROW(conv2d_forward(ctx, x, w, wrong_y, Conv2dGeometry(1, 0)), Error);  // padding 1 would fit
  const Tensor wrong_channels = Tensor::zeros({4, 3, 3, 2});
  EXPECT_THROW(conv2d_forward(ctx, x, wrong_channels, y, Conv2dGeometry(1, 0)), Error);
  const Tensor too_big = Tensor::zeros({4, 7, 7, 3});
  EXPECT_THROW(conv2d_output_shape(x.shape(), too_big.shape(), Conv2dGeometry(1, 0)), Error);
  EXPECT_THROW(conv2d_output_shape(x.shape(), w.shape(), Conv2dGeometry(0, 0)), Error);
  const Tensor half_w = Tensor::zeros({4, 3, 3, 3}, DType::BF16);
  EXPECT_THROW(conv2d_forward(ctx, x, half_w, y, Conv2dGeometry(1, 0)), Error);
  Tensor bf16_grad = Tensor::zeros({4, 3, 3, 3}, DType::BF16);
  EXPECT_THROW(conv2d_backward_filter(ctx, x, y, bf16_grad, Conv2dGeometry(1, 0)), Error);
}

TEST(ConvLayout, OihwAndOhwiConvertBothWays) {
  const int64_t o = 3, i = 5, kh = 2, kw = 4;
  const Tensor oihw = testing::random_tensor({o, i, kh, kw}, 11);
  const Tensor ohwi = oihw_to_ohwi(oihw);
  ASSERT_EQ(ohwi.shape(), (Shape{o, kh, kw, i}));
  for (int64_t a = 0; a < o; ++a)
    for (int64_t b = 0; b < i; ++b)
      for (int64_t c = 0; c < kh; ++c)
        for (int64_t d = 0; d < kw; ++d)
          ASSERT_EQ(ohwi.data<float>()[((a * kh + c) * kw + d) * i + b],
                    oihw.data<float>()[((a * i + b) * kh + c) * kw + d]);
  const Tensor back = ohwi_to_oihw(ohwi);
  ASSERT_EQ(back.shape(), oihw.shape());
  for (int64_t e = 0; e < oihw.numel(); ++e) ASSERT_EQ(back.data<float>()[e], oihw.data<float>()[e]);
  EXPECT_THROW(oihw_to_ohwi(Tensor::zeros({3, 4})), Error);
}

// ---- CUDA against the CPU twin --------------------------------------------------------------------

class ConvCuda : public ::testing::TestWithParam<testing::PrecisionCase> {};

// The CPU problems plus shapes whose channel counts suit the tensor-core kernels.
std::vector<ConvProblem> gpu_problems() {
  std::vector<ConvProblem> problems = kProblems;
  problems.push_back({4, 14, 14, 64, 64, 3, 3, Conv2dGeometry(1, 1)});
  problems.push_back({4, 14, 14, 32, 64, 1, 1, Conv2dGeometry(2, 0)});
  problems.push_back({2, 32, 32, 3, 64, 7, 7, Conv2dGeometry(2, 3)});
  problems.push_back({3, 7, 7, 256, 128, 1, 1, Conv2dGeometry(1, 0)});
  return problems;
}

// Every GPU problem in the three directions against the CPU twin, within pc's bound.
void expect_matches_cpu(const testing::PrecisionCase& pc) {
  Context cpu(Device::CPU), gpu(Device::CUDA);
  gpu.set_precision(pc.precision);
  for (const ConvProblem& p : gpu_problems()) {
    Tensor x = testing::random_tensor(p.x_shape(), 21), w = testing::random_tensor(p.w_shape(), 22);
    Tensor dy = testing::random_tensor(p.y_shape(), 23);
    const Tensor initial = testing::random_tensor(p.w_shape(), 24);
    // bf16: the host copies are rounded to the values the GPU sees.
    const Tensor gx = testing::upload(x, pc.dtype), gw = testing::upload(w, pc.dtype),
                 gdy = testing::upload(dy, pc.dtype);

    Tensor y = Tensor::empty(p.y_shape()), dx = Tensor::empty(p.x_shape()), dw = initial.clone();
    conv2d_forward(cpu, x, w, y, p.g);
    conv2d_backward_data(cpu, dy, w, dx, p.g);
    conv2d_backward_filter(cpu, x, dy, dw, p.g);

    Tensor gy = testing::poisoned(p.y_shape(), pc.dtype), gdx = testing::poisoned(p.x_shape(), pc.dtype);
    Tensor gdw = initial.to(Device::CUDA);
    conv2d_forward(gpu, gx, gw, gy, p.g);
    conv2d_backward_data(gpu, gdy, gw, gdx, p.g);
    conv2d_backward_filter(gpu, gx, gdy, gdw, p.g);
    gpu.synchronize();

    const std::string what = p.str() + " " + precision_name(pc.precision);
    EXPECT_LT(testing::relative_error(testing::host_f32(gy), y), pc.bound) << "forward " << what;
    EXPECT_LT(testing::relative_error(testing::host_f32(gdx), dx), pc.bound) << "backward data " << what;
    // Compare the increments, so an element the kernel never wrote cannot hide behind `initial`.
    std::vector<double> got = testing::to_doubles(gdw.to(Device::CPU)), want = testing::to_doubles(dw);
    const std::vector<double> start = testing::to_doubles(initial);
    for (size_t i = 0; i < got.size(); ++i) got[i] -= start[i], want[i] -= start[i];
    EXPECT_LT(testing::relative_error(got, want), pc.bound) << "backward filter " << what;
  }
}

TEST_P(ConvCuda, MatchesTheCpuTwin) {
  CUFACE_REQUIRE_GPU();
  expect_matches_cpu(GetParam());
}

// The way bf16 problems without a cuDNN algorithm are solved (in f32, cast down), forced for all.
TEST(ConvCudaBf16, SolvedInF32MatchesTheCpuTwin) {
  CUFACE_REQUIRE_GPU();
  ::setenv("CUFACE_CONV_BF16_IN_F32", "1", 1);
  expect_matches_cpu({Precision::BF16, DType::BF16, 2e-2});
  ::unsetenv("CUFACE_CONV_BF16_IN_F32");
}

// --deterministic: the filter gradient's search skips the algorithms whose sums vary from run to run
// (cuDNN's atomics; the emulator's fastest filter algorithm is such a one and adds its partial sums in
// a random order), so repeated runs give the same bits. Without it they differ on the emulator.
TEST(ConvCuda, DeterministicContextsGiveTheSameFilterGradientEveryRun) {
  CUFACE_REQUIRE_GPU();
  const ConvProblem p{4, 14, 14, 32, 16, 3, 3, Conv2dGeometry(1, 1)};
  const Tensor x = testing::random_tensor(p.x_shape(), 31).to(Device::CUDA);
  const Tensor dy = testing::random_tensor(p.y_shape(), 32).to(Device::CUDA);
  for (const bool deterministic : {true, false}) {
    Context gpu(Device::CUDA);
    gpu.set_deterministic(deterministic);
    std::vector<std::vector<float>> runs;
    for (int run = 0; run < 4; ++run) {
      Tensor dw = Tensor::zeros(p.w_shape(), DType::F32, Device::CUDA);
      conv2d_backward_filter(gpu, x, dy, dw, p.g);
      const Tensor host = dw.to(Device::CPU);
      runs.emplace_back(host.data<float>(), host.data<float>() + host.numel());
    }
    const bool all_equal = std::all_of(runs.begin(), runs.end(), [&](const auto& r) { return r == runs[0]; });
    if (deterministic) {
      EXPECT_TRUE(all_equal) << "a deterministic context's filter gradients differ between runs";
    } else if (testing::kEmulatedCuda) {
      EXPECT_FALSE(all_equal) << "the emulator's non-deterministic algorithm was not chosen: the test proves nothing";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, ConvCuda, testing::precision_cases(), testing::precision_case_name);

}  // namespace
}  // namespace cuface
