#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "common/backends.h"
#include "common/margin_reference.h"
#include "common/reference.h"
#include "engine/cuda_graph.h"
#include "engine/philox.h"
#include "kernels/partial_fc.h"
#include "layers/margin_head.h"

namespace cuface {
namespace {

using testing::all_margins;
using testing::describe;

constexpr int64_t kRows = 11, kClasses = 37, kDim = 16;  // C a multiple of nothing useful

// A batch whose rows reach every regime: rows 0-1 point away from their class centre (cos near -0.95,
// so theta + m > pi for ArcFace), rows 2-3 close to it (cos near 0.9), the rest random; row 5 and row
// 9 are ignored.
struct Batch {
  Tensor x, labels;
  std::vector<int> labels64;
};
Batch make_batch(const Tensor& weight, uint64_t seed) {
  Batch b;
  b.x = testing::random_tensor({kRows, kDim}, seed);
  b.labels = Tensor::empty({kRows}, DType::I32);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < kRows; ++i) {
    const int label = int(rng() % kClasses);
    b.labels.data<int32_t>()[i] = i == 5 || i == 9 ? -1 : label;
    b.labels64.push_back(b.labels.data<int32_t>()[i]);
    if (i < 4) {
      const float sign = i < 2 ? -1.0f : 1.0f;
      for (int64_t k = 0; k < kDim; ++k)
        b.x.data<float>()[i * kDim + k] = sign * weight.data<float>()[label * kDim + k] * 50 + 0.1f * b.x.data<float>()[i * kDim + k];
    }
  }
  return b;
}

double reference_loss(const std::vector<double>& x, const std::vector<double>& w, const std::vector<int>& labels,
                      const MarginParams& p, int64_t classes = kClasses) {
  return testing::reference_margin_ce(testing::reference_cosines(x, w, kRows, classes, kDim), kRows, classes, labels, p).loss;
}

// Central differences in double of `loss` with respect to every entry of `values`.
std::vector<double> numeric_gradient(std::vector<double>& values, const std::function<double()>& loss) {
  std::vector<double> out(values.size());
  for (size_t e = 0; e < values.size(); ++e) {
    const double saved = values[e], h = 1e-6 * std::max(1.0, std::abs(saved));
    values[e] = saved + h;
    const double plus = loss();
    values[e] = saved - h;
    const double minus = loss();
    values[e] = saved;
    out[e] = (plus - minus) / (2 * h);
  }
  return out;
}

TEST(MarginHead, LossAndStatisticsMatchFloat64UnfusedReference) {
  Context ctx(Device::CPU);
  for (const MarginParams& p : all_margins()) {
    MarginHead head(kClasses, kDim, {p, 1.0f, 3});
    Batch b = make_batch(head.weight().value, 5);
    const Tensor loss = head.forward(ctx, b.x, b.labels);
    const std::vector<double> cos = testing::reference_cosines(testing::to_doubles(b.x),
                                                               testing::to_doubles(head.weight().value), kRows, kClasses, kDim);
    const testing::ReferenceResult ref = testing::reference_margin_ce(cos, kRows, kClasses, b.labels64, p);
    // The batch does reach the ArcFace fallback (theta + m > pi) and a nearly solved target.
    EXPECT_LT(cos[size_t(0 * kClasses + b.labels64[0])], std::cos(M_PI - 0.5));
    EXPECT_GT(cos[size_t(2 * kClasses + b.labels64[2])], 0.8);

    EXPECT_NEAR(loss.data<float>()[0], ref.loss, 2e-5 * ref.loss) << describe(p);
    const HeadStats stats = head.stats(ctx);
    EXPECT_EQ(stats.loss, loss.data<float>()[0]);
    EXPECT_EQ(stats.labelled, ref.labelled);
    double accuracy = 0, target = 0;
    for (int64_t i = 0; i < kRows; ++i) {
      if (b.labels64[size_t(i)] < 0) continue;
      accuracy += ref.correct[size_t(i)];
      target += cos[size_t(i * kClasses + b.labels64[size_t(i)])];
    }
    EXPECT_NEAR(stats.accuracy, accuracy / ref.labelled, 1e-6);
    EXPECT_GT(stats.accuracy, 0.0f);  // rows 2 and 3 are classified correctly
    EXPECT_NEAR(stats.mean_target, target / ref.labelled, 1e-5);
  }
}

TEST(MarginHead, GradientsMatchFloat64FiniteDifferences) {
  Context ctx(Device::CPU);
  for (const MarginParams& p : all_margins()) {
    MarginHead head(kClasses, kDim, {p, 1.0f, 7});
    Batch b = make_batch(head.weight().value, 11);
    head.zero_grad(ctx);
    head.forward(ctx, b.x, b.labels);
    const Tensor dx = head.backward(ctx);

    std::vector<double> x = testing::to_doubles(b.x), w = testing::to_doubles(head.weight().value);
    auto loss = [&] { return reference_loss(x, w, b.labels64, p); };
    const std::vector<double> numeric_dx = numeric_gradient(x, loss);
    const std::vector<double> numeric_dw = numeric_gradient(w, loss);
    EXPECT_LT(testing::relative_error(testing::to_doubles(dx), numeric_dx), 1e-4) << describe(p);
    EXPECT_LT(testing::relative_error(testing::to_doubles(head.weight().grad), numeric_dw), 1e-4) << describe(p);
    // Ignored rows get no gradient.
    for (int64_t k = 0; k < kDim; ++k) EXPECT_EQ(dx.data<float>()[5 * kDim + k], 0.0f);
  }
}

TEST(MarginHead, GradientsAccumulateAndFrozenHeadLeavesThem) {
  Context ctx(Device::CPU);
  MarginHead head(kClasses, kDim);
  Batch b = make_batch(head.weight().value, 2);
  head.zero_grad(ctx);
  head.forward(ctx, b.x, b.labels);
  head.backward(ctx);
  const std::vector<double> once = testing::to_doubles(head.weight().grad);
  head.forward(ctx, b.x, b.labels);
  head.backward(ctx);
  std::vector<double> twice_expected(once);
  for (double& v : twice_expected) v *= 2;
  EXPECT_LT(testing::relative_error(testing::to_doubles(head.weight().grad), twice_expected), 1e-6);
  head.set_frozen(true);
  head.forward(ctx, b.x, b.labels);
  const Tensor dx = head.backward(ctx);
  EXPECT_LT(testing::relative_error(testing::to_doubles(head.weight().grad), twice_expected), 1e-6);
  EXPECT_GT(testing::relative_error(testing::to_doubles(dx), std::vector<double>(size_t(dx.numel()), 0.0)), 0.5);
}

TEST(MarginHead, InferenceGivesTheCosines) {
  Context ctx(Device::CPU);
  MarginHead head(kClasses, kDim);
  Tensor x = testing::random_tensor({kRows, kDim}, 4);
  const Tensor cos = head.forward(ctx, x);
  EXPECT_LT(testing::relative_error(testing::to_doubles(cos),
                                    testing::reference_cosines(testing::to_doubles(x), testing::to_doubles(head.weight().value),
                                                               kRows, kClasses, kDim)),
            1e-6);
  EXPECT_THROW(head.forward(ctx, testing::random_tensor({kRows, kDim + 1}, 4)), Error);
  EXPECT_THROW(head.backward(ctx), Error);  // no training forward yet
}

TEST(MarginHead, RejectsBadOptionsAndLabels) {
  Context ctx(Device::CPU);
  EXPECT_THROW(MarginHead(kClasses, kDim, {MarginParams{}, 0.0f, 0}), Error);
  EXPECT_THROW(MarginHead(kClasses, kDim, {MarginParams{}, 1.5f, 0}), Error);
  MarginHead head(kClasses, kDim);
  Tensor labels = Tensor::zeros({kRows}, DType::I32);
  labels.data<int32_t>()[3] = kClasses;
  EXPECT_THROW(head.forward(ctx, testing::random_tensor({kRows, kDim}, 1), labels), Error);
  EXPECT_THROW(head.forward(ctx, testing::random_tensor({kRows, kDim}, 1), Tensor::zeros({kRows + 1}, DType::I32)), Error);
}

// Partial FC sampling every class (r < 1 but ceil(r C) = C) runs the gather/select/scatter path, and
// must give the exact head's numbers bit for bit; r = 1 is the exact head itself.
TEST(PartialFc, SamplingEveryClassIsTheExactHeadBitForBit) {
  Context ctx(Device::CPU);
  for (const MarginParams& p : all_margins()) {
    MarginHead exact(kClasses, kDim, {p, 1.0f, 9});
    MarginHead sampled(kClasses, kDim, {p, 0.999f, 9});
    ASSERT_EQ(partial_fc_sample_count(kClasses, kRows, 0.999f), kClasses);
    Batch b = make_batch(exact.weight().value, 3);
    exact.zero_grad(ctx);
    sampled.zero_grad(ctx);
    const float exact_loss = exact.forward(ctx, b.x, b.labels).data<float>()[0];
    const float sampled_loss = sampled.forward(ctx, b.x, b.labels).data<float>()[0];
    const Tensor dx_exact = exact.backward(ctx), dx_sampled = sampled.backward(ctx);
    EXPECT_EQ(exact_loss, sampled_loss) << describe(p);
    for (int64_t e = 0; e < dx_exact.numel(); ++e) ASSERT_EQ(dx_exact.data<float>()[e], dx_sampled.data<float>()[e]) << e;
    for (int64_t e = 0; e < kClasses * kDim; ++e)
      ASSERT_EQ(exact.weight().grad.data<float>()[e], sampled.weight().grad.data<float>()[e]) << e;
  }
}

// With r < 1 the head is the exact head on the sampled rows of W with remapped labels, and rows not
// sampled get no gradient.
TEST(PartialFc, SampledHeadIsTheExactHeadOnTheSampledClasses) {
  Context ctx(Device::CPU);
  const MarginParams p = default_margin_params(MarginType::ArcFace);
  const float rate = 0.3f;
  const int64_t sample = partial_fc_sample_count(kClasses, kRows, rate);
  ASSERT_EQ(sample, 12);  // ceil(0.3 * 37) = 12 >= N = 11
  MarginHead sampled(kClasses, kDim, {p, rate, 21});
  Batch b = make_batch(sampled.weight().value, 8);

  // The selection the head will make at its first step (stream t + 1 = 1).
  Tensor index = Tensor::empty({sample}, DType::I32), remapped = Tensor::empty({kRows}, DType::I32);
  select_classes(ctx, b.labels, kClasses, 21, 1, index, remapped);
  const int32_t* idx = index.data<int32_t>();
  EXPECT_TRUE(std::is_sorted(idx, idx + sample));
  EXPECT_TRUE(std::adjacent_find(idx, idx + sample) == idx + sample);
  for (int64_t i = 0; i < kRows; ++i) {
    const int y = b.labels64[size_t(i)];
    EXPECT_EQ(remapped.data<int32_t>()[i], y < 0 ? -1 : int32_t(std::find(idx, idx + sample, y) - idx));
    if (y >= 0) {
      EXPECT_EQ(idx[remapped.data<int32_t>()[i]], y);  // every positive is sampled
    }
  }

  MarginHead subset(sample, kDim, {p, 1.0f, 0});
  for (int64_t k = 0; k < sample; ++k)
    std::copy_n(sampled.weight().value.data<float>() + idx[k] * kDim, kDim, subset.weight().value.data<float>() + k * kDim);
  sampled.zero_grad(ctx);
  subset.zero_grad(ctx);
  EXPECT_EQ(sampled.forward(ctx, b.x, b.labels).data<float>()[0], subset.forward(ctx, b.x, remapped).data<float>()[0]);
  const Tensor dx_sampled = sampled.backward(ctx), dx_subset = subset.backward(ctx);
  EXPECT_EQ(testing::relative_error(dx_sampled, dx_subset), 0.0);
  std::vector<bool> in_sample(size_t(kClasses), false);
  for (int64_t k = 0; k < sample; ++k) in_sample[size_t(idx[k])] = true;
  for (int64_t c = 0, k = 0; c < kClasses; ++c) {
    for (int64_t d = 0; d < kDim; ++d) {
      const float g = sampled.weight().grad.data<float>()[c * kDim + d];
      if (in_sample[size_t(c)]) {
        ASSERT_EQ(g, subset.weight().grad.data<float>()[k * kDim + d]);
      } else {
        ASSERT_EQ(g, 0.0f);
      }
    }
    k += in_sample[size_t(c)];
  }
  EXPECT_EQ(sampled.sampling_step(), 1u);
}

// Partial FC's sampling among 1000 classes at rate 0.1 for 4 rows labelled 0, 7, 14, 21.
struct SamplingCase {
  int64_t classes = 1000, rows = 4, sample = partial_fc_sample_count(classes, rows, 0.1f);
  Tensor labels = Tensor::empty({rows}, DType::I32), remapped = Tensor::empty({rows}, DType::I32);
  SamplingCase() {
    for (int64_t i = 0; i < rows; ++i) labels.data<int32_t>()[i] = int32_t(i * 7);
  }
};

// A step given as number + device counter (kernels/random_step.h) samples as the step number + counter.
TEST(PartialFc, AStepCounterAddsToTheNumber) {
  Context ctx(Device::CPU);
  SamplingCase c;
  const int64_t classes = c.classes, sample = c.sample;
  Tensor &labels = c.labels, &remapped = c.remapped;
  Tensor want = Tensor::empty({sample}, DType::I32), got = Tensor::empty({sample}, DType::I32);
  select_classes(ctx, labels, classes, 5, 9, want, remapped);
  select_classes(ctx, labels, classes, 5, {2, testing::step_counter(7)}, got, remapped);
  EXPECT_TRUE(std::equal(want.data<int32_t>(), want.data<int32_t>() + sample, got.data<int32_t>()));
  EXPECT_THROW(select_classes(ctx, labels, classes, 5, {2, Tensor::zeros({2}, DType::I32)}, got, remapped), Error);
}

TEST(PartialFc, SamplesChangeEveryStepAndAreUniformOverNegatives) {
  Context ctx(Device::CPU);
  SamplingCase c;
  const int64_t classes = c.classes, rows = c.rows, sample = c.sample;
  Tensor &labels = c.labels, &remapped = c.remapped;
  Tensor a = Tensor::empty({sample}, DType::I32), b = Tensor::empty({sample}, DType::I32);
  select_classes(ctx, labels, classes, 5, 1, a, remapped);
  select_classes(ctx, labels, classes, 5, 1, b, remapped);
  EXPECT_TRUE(std::equal(a.data<int32_t>(), a.data<int32_t>() + sample, b.data<int32_t>()));  // reproducible
  select_classes(ctx, labels, classes, 5, 2, b, remapped);
  EXPECT_FALSE(std::equal(a.data<int32_t>(), a.data<int32_t>() + sample, b.data<int32_t>()));  // a new step
  // Over 400 steps each negative class is drawn with probability (K - P) / (C - P): check the counts
  // lie within 5 standard deviations of that mean.
  std::vector<int> counts(size_t(classes), 0);
  const int steps = 400;
  for (int s = 0; s < steps; ++s) {
    select_classes(ctx, labels, classes, 6, uint64_t(s), a, remapped);
    for (int64_t k = 0; k < sample; ++k) ++counts[size_t(a.data<int32_t>()[k])];
  }
  const double prob = double(sample - rows) / double(classes - rows);
  const double mean = steps * prob, sd = std::sqrt(steps * prob * (1 - prob));
  for (int64_t c = 0; c < classes; ++c) {
    if (c % 7 == 0 && c < rows * 7) {
      EXPECT_EQ(counts[size_t(c)], steps);  // positives always
    } else {
      EXPECT_NEAR(counts[size_t(c)], mean, 5 * sd) << c;
    }
  }
}

// A rank's window of the classes (--shard-classes): its positives, then the negatives of the window
// with the smallest draws u_c, where u_c is number c (the global class) of the stream, as unsharded;
// another window's label maps to K. Checked against that rule written out naively.
TEST(PartialFc, WindowSamplesItsOwnClassesWithTheGlobalDraws) {
  Context ctx(Device::CPU);
  const int64_t classes = 200, first = 50, count = 80, rows = 9;
  const uint64_t seed = 3, step = 4;
  const std::vector<int32_t> y = {51, -1, 7, 129, 51, 130, 60, 199, 50};  // in, -1, out, in, in, out, in, out, in
  Tensor labels = Tensor::empty({rows}, DType::I32);
  std::copy(y.begin(), y.end(), labels.data<int32_t>());
  const int64_t sample = partial_fc_sample_count(count, rows, 0.25f);
  ASSERT_EQ(sample, 20);
  Tensor index = Tensor::empty({sample}, DType::I32), remapped = Tensor::empty({rows}, DType::I32);
  select_classes(ctx, labels, classes, seed, step, index, remapped, {first, count});

  std::vector<int32_t> expected;  // window positions
  for (int32_t label : y)
    if (label >= first && label < first + count) expected.push_back(label - int32_t(first));
  std::sort(expected.begin(), expected.end());
  expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
  std::vector<std::pair<uint32_t, int32_t>> negatives;  // (u, window position)
  for (int32_t c = 0; c < count; ++c) {
    if (std::binary_search(expected.begin(), expected.end(), c)) continue;
    const uint64_t global = uint64_t(first + c);
    negatives.push_back({philox_block(seed, step, global / 4).v[global % 4], c});
  }
  std::sort(negatives.begin(), negatives.end());
  const size_t positives = expected.size();
  for (size_t j = 0; j + positives < size_t(sample); ++j) expected.push_back(negatives[j].second);
  std::sort(expected.begin(), expected.end());
  ASSERT_EQ(std::vector<int32_t>(index.data<int32_t>(), index.data<int32_t>() + sample), expected);
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t label = y[size_t(i)];
    const bool here = label >= first && label < first + count;
    const int32_t want = label < 0 ? -1
                         : here    ? int32_t(std::find(expected.begin(), expected.end(), label - first) - expected.begin())
                                   : int32_t(sample);
    EXPECT_EQ(remapped.data<int32_t>()[i], want) << "row " << i;
  }
}

// GPU against CPU: the same samples, the same head in fp32, and the bf16 path within bf16 bounds.
TEST(MarginHeadCuda, MatchesCpu) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  for (const float rate : {1.0f, 0.3f}) {
    for (const MarginParams& p : all_margins()) {
      MarginHead on_cpu(kClasses, kDim, {p, rate, 4}), on_gpu(kClasses, kDim, {p, rate, 4});
      on_gpu.to(Device::CUDA);
      Batch b = make_batch(on_cpu.weight().value, 6);
      on_cpu.zero_grad(cpu);
      const float cpu_loss = on_cpu.forward(cpu, b.x, b.labels).data<float>()[0];
      const Tensor cpu_dx = on_cpu.backward(cpu);
      const Tensor gpu_loss = on_gpu.forward(gpu, b.x.to(Device::CUDA), b.labels.to(Device::CUDA));
      const Tensor gpu_dx = on_gpu.backward(gpu);
      gpu.synchronize();
      EXPECT_NEAR(gpu_loss.to(Device::CPU).data<float>()[0], cpu_loss, 1e-5 * cpu_loss) << describe(p) << rate;
      EXPECT_LT(testing::relative_error(gpu_dx, cpu_dx), 1e-4) << describe(p) << rate;
      EXPECT_LT(testing::relative_error(on_gpu.weight().grad, on_cpu.weight().grad), 1e-4) << describe(p) << rate;
    }
  }
  // bf16 GEMM operands: cosines carry bf16 rounding (~4e-3 relative), so loose bounds. Under Partial
  // FC too: the gathered centres are normalised straight into bf16, which backward's GEMMs read as they
  // are (with dcos and x^ cast to bf16 once).
  gpu.set_precision(Precision::BF16);
  for (const float rate : {1.0f, 0.3f}) {
    MarginHeadOptions options;
    options.sample_rate = rate;
    options.seed = 4;
    MarginHead on_cpu(kClasses, kDim, options), on_gpu(kClasses, kDim, options);
    on_gpu.to(Device::CUDA);
    Batch b = make_batch(on_cpu.weight().value, 6);
    const float cpu_loss = on_cpu.forward(cpu, b.x, b.labels).data<float>()[0];
    const Tensor cpu_dx = on_cpu.backward(cpu);
    const Tensor gpu_loss = on_gpu.forward(gpu, b.x.to(Device::CUDA), b.labels.to(Device::CUDA));
    const Tensor gpu_dx = on_gpu.backward(gpu);
    gpu.synchronize();
    EXPECT_NEAR(gpu_loss.to(Device::CPU).data<float>()[0], cpu_loss, 0.05 * cpu_loss) << rate;
    EXPECT_LT(testing::relative_error(gpu_dx, cpu_dx), 0.1) << rate;
    EXPECT_LT(testing::relative_error(on_gpu.weight().grad, on_cpu.weight().grad), 0.1) << rate;
  }
}

TEST(PartialFcCuda, SelectionMatchesCpu) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  const int64_t classes = 100003, rows = 512, sample = partial_fc_sample_count(classes, rows, 0.1f);
  Tensor labels = Tensor::empty({rows}, DType::I32);
  std::mt19937_64 rng(1);
  for (int64_t i = 0; i < rows; ++i) labels.data<int32_t>()[i] = i % 9 == 0 ? -1 : int32_t(rng() % classes);
  Tensor index = Tensor::empty({sample}, DType::I32), remapped = Tensor::empty({rows}, DType::I32);
  select_classes(cpu, labels, classes, 77, 3, index, remapped);
  Tensor gpu_index = Tensor::empty({sample}, DType::I32, Device::CUDA);
  Tensor gpu_remapped = Tensor::empty({rows}, DType::I32, Device::CUDA);
  select_classes(gpu, labels.to(Device::CUDA), classes, 77, 3, gpu_index, gpu_remapped);
  gpu.synchronize();
  const Tensor gi = gpu_index.to(Device::CPU), gr = gpu_remapped.to(Device::CPU);
  for (int64_t k = 0; k < sample; ++k) ASSERT_EQ(gi.data<int32_t>()[k], index.data<int32_t>()[k]) << k;
  for (int64_t i = 0; i < rows; ++i) ASSERT_EQ(gr.data<int32_t>()[i], remapped.data<int32_t>()[i]) << i;

  // One rank's window of the classes (--shard-classes --sample-rate).
  const ClassWindow window{40000, 30001};
  const int64_t window_sample = partial_fc_sample_count(window.count, rows, 0.1f);
  index = Tensor::empty({window_sample}, DType::I32);
  gpu_index = Tensor::empty({window_sample}, DType::I32, Device::CUDA);
  select_classes(cpu, labels, classes, 77, 3, index, remapped, window);
  select_classes(gpu, labels.to(Device::CUDA), classes, 77, 3, gpu_index, gpu_remapped, window);
  gpu.synchronize();
  const Tensor wi = gpu_index.to(Device::CPU), wr = gpu_remapped.to(Device::CPU);
  for (int64_t k = 0; k < window_sample; ++k) ASSERT_EQ(wi.data<int32_t>()[k], index.data<int32_t>()[k]) << k;
  for (int64_t i = 0; i < rows; ++i) ASSERT_EQ(wr.data<int32_t>()[i], remapped.data<int32_t>()[i]) << i;
}

// The selection captured in a CUDA graph with a step counter, replayed after the host wrote steps 3 and 8
// into it, is the CPU's selection of steps 1 + 3 and 1 + 8 (the counter is read when the kernels run).
TEST(PartialFcCuda, ACapturedStepCounterIsReadAtEachReplay) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  const int64_t classes = 5003, rows = 64, sample = partial_fc_sample_count(classes, rows, 0.1f);
  Tensor labels = Tensor::empty({rows}, DType::I32);
  for (int64_t i = 0; i < rows; ++i) labels.data<int32_t>()[i] = i % 9 == 0 ? -1 : int32_t(i * 71 % classes);
  const Tensor gpu_labels = labels.to(Device::CUDA);
  Tensor gpu_index = Tensor::empty({sample}, DType::I32, Device::CUDA);
  Tensor gpu_remapped = Tensor::empty({rows}, DType::I32, Device::CUDA);
  Tensor counter = Tensor::zeros({1}, DType::I32, Device::CUDA);
  auto select = [&] { select_classes(gpu, gpu_labels, classes, 77, {1, counter}, gpu_index, gpu_remapped); };
  select();  // eagerly first: the context's workspace grows outside the capture
  CudaGraph graph;
  std::string why;
  ASSERT_TRUE(graph.capture(gpu, select, &why)) << why;
  for (int32_t step : {3, 8}) {
    counter.copy_from(testing::step_counter(step));
    graph.replay(gpu);
    gpu.synchronize();
    Tensor index = Tensor::empty({sample}, DType::I32), remapped = Tensor::empty({rows}, DType::I32);
    select_classes(cpu, labels, classes, 77, 1 + uint64_t(step), index, remapped);
    const Tensor gi = gpu_index.to(Device::CPU), gr = gpu_remapped.to(Device::CPU);
    for (int64_t k = 0; k < sample; ++k) ASSERT_EQ(gi.data<int32_t>()[k], index.data<int32_t>()[k]) << step << ' ' << k;
    for (int64_t i = 0; i < rows; ++i)
      ASSERT_EQ(gr.data<int32_t>()[i], remapped.data<int32_t>()[i]) << step << ' ' << i;
  }
}

}  // namespace
}  // namespace cuface
