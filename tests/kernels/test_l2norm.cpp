#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/margin_reference.h"
#include "common/reference.h"
#include "kernels/l2norm.h"

namespace cuface {
namespace {

class L2Norm : public testing::BackendTest {};

TEST_P(L2Norm, ForwardMatchesFloat64AndBackwardMatchesProjection) {
  const int64_t rows = 37, dim = 131;
  Tensor x = testing::random_tensor({rows, dim}, 3, -2, 2);
  Tensor dy = testing::random_tensor({rows, dim}, 4);
  Tensor y = Tensor::empty({rows, dim}, DType::F32, device()), norms = Tensor::empty({rows}, DType::F32, device());
  testing::poison(y);
  Tensor dx_in = x.to(device());
  l2norm_forward(ctx(), dx_in, y, norms);
  Tensor dx = Tensor::empty({rows, dim}, DType::F32, device());
  testing::poison(dx);
  l2norm_backward(ctx(), dx_in, norms, dy.to(device()), dx, false);
  Tensor accumulated = testing::random_tensor({rows, dim}, 5).to(device());
  Tensor before = accumulated.to(Device::CPU);
  l2norm_backward(ctx(), dx_in, norms, dy.to(device()), accumulated, true);
  ctx().synchronize();

  const std::vector<double> x64 = testing::to_doubles(x), dy64 = testing::to_doubles(dy);
  const std::vector<double> y64 = testing::reference_normalise(x64, rows, dim);
  std::vector<double> norm64(static_cast<size_t>(rows)), dx64(size_t(rows * dim)), acc64 = testing::to_doubles(before);
  for (int64_t i = 0; i < rows; ++i) {
    double sq = 0, dot = 0;
    for (int64_t k = 0; k < dim; ++k) sq += x64[size_t(i * dim + k)] * x64[size_t(i * dim + k)];
    norm64[size_t(i)] = std::sqrt(sq);
    for (int64_t k = 0; k < dim; ++k) dot += y64[size_t(i * dim + k)] * dy64[size_t(i * dim + k)];
    for (int64_t k = 0; k < dim; ++k) {
      const size_t e = size_t(i * dim + k);
      dx64[e] = (dy64[e] - y64[e] * dot) / norm64[size_t(i)];
      acc64[e] += dx64[e];
    }
  }
  EXPECT_LT(testing::relative_error(testing::to_doubles(y), y64), 1e-6);
  EXPECT_LT(testing::relative_error(testing::to_doubles(norms), norm64), 1e-6);
  EXPECT_LT(testing::relative_error(testing::to_doubles(dx), dx64), 1e-5);
  EXPECT_LT(testing::relative_error(testing::to_doubles(accumulated), acc64), 1e-5);
}

TEST_P(L2Norm, BackwardIsTheFiniteDifferenceOfForward) {
  // L = sum r * normalise(x): dL/dx from backward vs central differences in double.
  const int64_t rows = 3, dim = 9;
  Tensor x = testing::random_tensor({rows, dim}, 8);
  Tensor r = testing::random_tensor({rows, dim}, 9);
  Tensor y = Tensor::empty({rows, dim}, DType::F32, device()), norms = Tensor::empty({rows}, DType::F32, device());
  Tensor dx = Tensor::empty({rows, dim}, DType::F32, device());
  Tensor xd = x.to(device());
  l2norm_forward(ctx(), xd, y, norms);
  l2norm_backward(ctx(), xd, norms, r.to(device()), dx, false);
  ctx().synchronize();
  std::vector<double> x64 = testing::to_doubles(x), r64 = testing::to_doubles(r), numeric;
  auto loss = [&](const std::vector<double>& v) {
    const std::vector<double> yn = testing::reference_normalise(v, rows, dim);
    double sum = 0;
    for (size_t e = 0; e < yn.size(); ++e) sum += yn[e] * r64[e];
    return sum;
  };
  for (size_t e = 0; e < x64.size(); ++e) {
    std::vector<double> plus = x64, minus = x64;
    plus[e] += 1e-6, minus[e] -= 1e-6;
    numeric.push_back((loss(plus) - loss(minus)) / 2e-6);
  }
  EXPECT_LT(testing::relative_error(testing::to_doubles(dx), numeric), 1e-5);
}

TEST_P(L2Norm, Bf16OutputIsTheRoundedF32Output) {
  const int64_t rows = 5, dim = 512;
  Tensor x = testing::random_tensor({rows, dim}, 10).to(device());
  Tensor y = Tensor::empty({rows, dim}, DType::F32, device()), y16 = Tensor::empty({rows, dim}, DType::BF16, device());
  Tensor norms = Tensor::empty({rows}, DType::F32, device());
  l2norm_forward(ctx(), x, y, norms);
  l2norm_forward(ctx(), x, y16, norms);
  ctx().synchronize();
  Tensor a = y.to(Device::CPU), b = y16.to(Device::CPU);
  for (int64_t e = 0; e < rows * dim; ++e)
    ASSERT_EQ(b.data<bf16>()[e].bits, to_bf16(a.data<float>()[e]).bits) << e;
}

TEST_P(L2Norm, ZeroRowStaysFinite) {
  Tensor x = Tensor::zeros({2, 4}, DType::F32, device());
  Tensor y = Tensor::empty({2, 4}, DType::F32, device()), norms = Tensor::empty({2}, DType::F32, device());
  l2norm_forward(ctx(), x, y, norms);
  ctx().synchronize();
  for (double v : testing::to_doubles(y)) EXPECT_EQ(v, 0.0);
}

// A NaN makes its row's norm and whole output NaN on both backends (a diverging run shows it), and
// leaves the other rows alone.
TEST_P(L2Norm, NanRowStaysNan) {
  Tensor host = Tensor::empty({2, 40});
  for (int64_t i = 0; i < 80; ++i) host.data<float>()[i] = i == 13 ? NAN : 0.01f * float(i + 1);
  Tensor x = host.to(device()), y = Tensor::empty({2, 40}, DType::F32, device());
  Tensor norms = Tensor::empty({2}, DType::F32, device());
  l2norm_forward(ctx(), x, y, norms);
  ctx().synchronize();
  const std::vector<double> out = testing::to_doubles(y), n = testing::to_doubles(norms);
  EXPECT_TRUE(std::isnan(n[0]));
  EXPECT_TRUE(std::isfinite(n[1]));
  for (int64_t j = 0; j < 40; ++j) EXPECT_TRUE(std::isnan(out[size_t(j)])) << j;
  for (int64_t j = 40; j < 80; ++j) EXPECT_TRUE(std::isfinite(out[size_t(j)])) << j;
}

CUFACE_ON_EVERY_BACKEND(L2Norm);

}  // namespace
}  // namespace cuface
