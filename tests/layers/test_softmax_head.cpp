#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "common/backends.h"
#include "common/reference.h"
#include "layers/softmax_head.h"

namespace cuface {
namespace {

// Float64 reference: mean over labelled rows of -sum_j q_j log softmax(x W^T + b)_j.
double reference_loss(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b,
                      const std::vector<int>& labels, int64_t classes, int64_t dim, double smoothing) {
  double total = 0;
  int labelled = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) continue;
    ++labelled;
    std::vector<double> z(static_cast<size_t>(classes));
    for (int64_t j = 0; j < classes; ++j) {
      z[size_t(j)] = b[size_t(j)];
      for (int64_t k = 0; k < dim; ++k) z[size_t(j)] += x[i * size_t(dim) + size_t(k)] * w[size_t(j * dim + k)];
    }
    const double max = *std::max_element(z.begin(), z.end());
    double sum = 0;
    for (double v : z) sum += std::exp(v - max);
    for (int64_t j = 0; j < classes; ++j) {
      const double q = j == labels[i] ? 1 - smoothing : smoothing / double(classes - 1);
      total -= q * (z[size_t(j)] - max - std::log(sum));
    }
  }
  return total / labelled;
}

std::vector<double> numeric_gradient(std::vector<double>& values, const std::function<double()>& loss) {
  std::vector<double> out(values.size());
  for (size_t e = 0; e < values.size(); ++e) {
    const double saved = values[e];
    values[e] = saved + 1e-6;
    const double plus = loss();
    values[e] = saved - 1e-6;
    const double minus = loss();
    values[e] = saved;
    out[e] = (plus - minus) / 2e-6;
  }
  return out;
}

class SoftmaxHeadTest : public testing::BackendTest {};

TEST_P(SoftmaxHeadTest, LossAndGradientsMatchFloat64FiniteDifferences) {
  for (const auto& [classes, smoothing] : std::vector<std::pair<int64_t, float>>{{7, 0.1f}, {2, 0.1f}, {7, 0.0f}}) {
    const int64_t rows = 13, dim = 10;
    SoftmaxHead head(classes, dim, {smoothing, 3});
    const Tensor w_host = head.weight().value.clone(), b_host = head.bias().value.clone();
    head.to(device());
    Tensor x = testing::random_tensor({rows, dim}, 2, -2, 2);
    Tensor labels = Tensor::empty({rows}, DType::I32);
    std::vector<int> labels64;
    std::mt19937_64 rng(classes);
    for (int64_t i = 0; i < rows; ++i) {
      labels.data<int32_t>()[i] = i == 4 ? -1 : int32_t(rng() % uint64_t(classes));
      labels64.push_back(labels.data<int32_t>()[i]);
    }
    head.zero_grad(ctx());
    const Tensor loss = head.forward(ctx(), x.to(device()), labels.to(device()));
    const Tensor dx = head.backward(ctx());
    ctx().synchronize();

    std::vector<double> x64 = testing::to_doubles(x), w64 = testing::to_doubles(w_host), b64 = testing::to_doubles(b_host);
    auto f = [&] { return reference_loss(x64, w64, b64, labels64, classes, dim, smoothing); };
    EXPECT_NEAR(loss.to(Device::CPU).data<float>()[0], f(), 1e-5 * f());
    EXPECT_LT(testing::relative_error(testing::to_doubles(dx), numeric_gradient(x64, f)), 1e-5);
    EXPECT_LT(testing::relative_error(testing::to_doubles(head.weight().grad), numeric_gradient(w64, f)), 1e-5);
    EXPECT_LT(testing::relative_error(testing::to_doubles(head.bias().grad), numeric_gradient(b64, f)), 1e-5);
    EXPECT_EQ(head.stats(ctx()).labelled, rows - 1);
  }
}

TEST_P(SoftmaxHeadTest, InferenceGivesTheLogits) {
  SoftmaxHead head(7, 5);
  const Tensor w = head.weight().value.clone(), b = head.bias().value.clone();
  head.to(device());
  Tensor x = testing::random_tensor({3, 5}, 1);
  const Tensor z = head.forward(ctx(), x.to(device()));
  std::vector<double> expected;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 7; ++j) {
      double v = b.data<float>()[j];
      for (int64_t k = 0; k < 5; ++k) v += double(x.data<float>()[i * 5 + k]) * w.data<float>()[j * 5 + k];
      expected.push_back(v);
    }
  EXPECT_LT(testing::relative_error(testing::to_doubles(z), expected), 1e-6);
}

CUFACE_ON_EVERY_BACKEND(SoftmaxHeadTest);

TEST(SoftmaxHead, ParametersHaveTorchNamesAndInitialisation) {
  SoftmaxHead head(2, 512);
  const auto params = head.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "weight");
  EXPECT_EQ(params[1].name, "bias");
  EXPECT_FALSE(params[1].parameter->decay);
  const float bound = 1.0f / std::sqrt(512.0f);
  double sum_sq = 0;
  for (double v : testing::to_doubles(head.weight().value)) {
    ASSERT_LE(std::abs(v), bound);
    sum_sq += v * v;
  }
  EXPECT_NEAR(sum_sq / 1024, bound * bound / 3, 0.15 * bound * bound / 3);  // variance of U(-a, a)
}

TEST(AgeBins, DefaultSevenBinsAndCustomEdges) {
  EXPECT_EQ(default_age_edges().size() + 1, 7u);
  EXPECT_EQ(age_to_bin(0), 0);
  EXPECT_EQ(age_to_bin(12), 0);
  EXPECT_EQ(age_to_bin(13), 1);
  EXPECT_EQ(age_to_bin(29), 2);
  EXPECT_EQ(age_to_bin(59), 5);
  EXPECT_EQ(age_to_bin(60), 6);
  EXPECT_EQ(age_to_bin(95), 6);  // the last bin takes everything above: the original's clip to 6
  EXPECT_EQ(age_to_bin(-1), -1);
  EXPECT_EQ(age_to_bin(44, {18, 30, 45}), 2);
}

}  // namespace
}  // namespace cuface
