#include <gtest/gtest.h>

#include <random>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "kernels/softmax_ce.h"

namespace cuface {
namespace {

class SoftmaxCe : public testing::BackendTest {};

// Float64 reference: loss -sum q log p with the original's smoothed target, gradient (p - q) / L.
void check_against_reference(Context& ctx, Device device, int64_t n, int64_t c, float smoothing, uint64_t seed) {
  Tensor logits = testing::random_tensor({n, c}, seed, -4, 4);
  Tensor labels = Tensor::empty({n}, DType::I32);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < n; ++i) labels.data<int32_t>()[i] = i % 4 == 1 ? -1 : int32_t(rng() % uint64_t(c));
  const std::vector<double> z = testing::to_doubles(logits);
  Tensor dz = logits.to(device), dlabels = labels.to(device);
  Tensor rows = Tensor::empty({n, kRowStatColumns}, DType::F32, device), stats = Tensor::empty({kStatCount}, DType::F32, device);
  testing::poison(rows);
  softmax_ce(ctx, dz, dlabels, smoothing, rows);
  reduce_row_stats(ctx, dlabels, rows, stats);
  ctx.synchronize();

  int labelled = 0;
  for (int64_t i = 0; i < n; ++i) labelled += labels.data<int32_t>()[i] >= 0;
  std::vector<double> grad(size_t(n * c), 0.0), row_loss(size_t(n), 0.0);
  double loss = 0, accuracy = 0, p_target = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int y = labels.data<int32_t>()[i];
    if (y < 0) continue;
    const double* row = z.data() + i * c;
    const double max = *std::max_element(row, row + c);
    double sum = 0;
    for (int64_t j = 0; j < c; ++j) sum += std::exp(row[j] - max);
    for (int64_t j = 0; j < c; ++j) {
      const double q = j == y ? 1 - smoothing : smoothing / double(c - 1);
      const double log_p = row[j] - max - std::log(sum);
      row_loss[size_t(i)] -= q * log_p;
      grad[size_t(i * c + j)] = (std::exp(log_p) - q) / labelled;
    }
    loss += row_loss[size_t(i)] / labelled;
    accuracy += (std::max_element(row, row + c) - row == y) / double(labelled);
    p_target += std::exp(row[y] - max) / sum / labelled;
  }
  EXPECT_LT(testing::relative_error(testing::to_doubles(dz), grad), 1e-5);
  Tensor s = stats.to(Device::CPU);
  EXPECT_NEAR(s.data<float>()[0], loss, 1e-5 * loss);
  EXPECT_NEAR(s.data<float>()[1], accuracy, 1e-6);
  EXPECT_NEAR(s.data<float>()[2], p_target, 1e-5);
  EXPECT_EQ(s.data<float>()[3], float(labelled));
  Tensor r = rows.to(Device::CPU);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(r.data<float>()[i * kRowStatColumns], row_loss[size_t(i)], 1e-5);
}

TEST_P(SoftmaxCe, OneHotMatchesFloat64Reference) {
  check_against_reference(ctx(), device(), 33, 7, 0.0f, 1);
  check_against_reference(ctx(), device(), 5, 2, 0.0f, 2);
  check_against_reference(ctx(), device(), 9, 1003, 0.0f, 3);
}

TEST_P(SoftmaxCe, LabelSmoothingMatchesFloat64Reference) {
  check_against_reference(ctx(), device(), 33, 7, 0.1f, 4);
  check_against_reference(ctx(), device(), 40, 2, 0.1f, 5);
}

CUFACE_ON_EVERY_BACKEND(SoftmaxCe);

TEST(SoftmaxCe, RejectsBadArguments) {
  Context ctx(Device::CPU);
  Tensor logits = Tensor::zeros({2, 3}), rows = Tensor::empty({2, kRowStatColumns});
  Tensor labels = Tensor::zeros({2}, DType::I32);
  labels.data<int32_t>()[1] = 3;
  EXPECT_THROW(softmax_ce(ctx, logits, labels, 0.0f, rows), Error);
  labels.data<int32_t>()[1] = 0;
  EXPECT_THROW(softmax_ce(ctx, logits, labels, 1.0f, rows), Error);
  Tensor one_class = Tensor::zeros({2, 1});
  EXPECT_THROW(softmax_ce(ctx, one_class, labels, 0.1f, rows), Error);
}


// The GPU cannot throw on a bad label: its row becomes NaN (so the logged loss shows it), a -1 row
// stays zero, and the other rows stay finite.
TEST(SoftmaxCeCuda, BadLabelsPoisonOnlyTheirRows) {
  CUFACE_REQUIRE_GPU();
  Context gpu(Device::CUDA);
  Tensor labels = Tensor::empty({5}, DType::I32);
  const int32_t values[5] = {-1, -2, 7, 3, 6};
  for (int64_t i = 0; i < 5; ++i) labels.data<int32_t>()[i] = values[i];
  Tensor logits = testing::random_tensor({5, 7}, 12, -4, 4).to(Device::CUDA), gpu_labels = labels.to(Device::CUDA);
  Tensor rows = Tensor::empty({5, kRowStatColumns}, DType::F32, Device::CUDA);
  testing::poison(rows);
  softmax_ce(gpu, logits, gpu_labels, 0.1f, rows);
  gpu.synchronize();
  testing::expect_rows_by_label(logits, rows, labels, 7);
}

}  // namespace
}  // namespace cuface
