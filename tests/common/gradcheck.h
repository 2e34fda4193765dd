// A finite-difference gradient checker shared by every layer test (Caffe's habit): the loss is
// L = sum_i r_i * y_i with fixed random r, so dL/dy = r; backward's dL/dx and parameter gradients are
// compared with central differences (L(v + h) - L(v - h)) / 2h on a sample of coordinates.
//
// Layers run in float32, so the bound is a float32 one: with h = 1e-2 the truncation error of the
// central difference is O(h^2 f''') ~ 1e-4 relative for these smooth functions, and the rounding
// noise of an fp32 forward (~1e-7 relative per output, summed over ~1e3 outputs in double) divided
// by 2h stays below ~1e-4 of a typical derivative. The tests therefore assert a norm-wise relative
// error below 1e-3 unless they state otherwise.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>

#include "common/reference.h"
#include "layers/layer.h"

namespace cuface::testing {

struct GradCheckResult {
  double input_error = 0;                       // norm-wise relative error of dL/dx
  std::map<std::string, double> parameter_errors;  // per trainable parameter
  double worst() const {
    double w = input_error;
    for (auto& [name, e] : parameter_errors) w = std::max(w, e);
    return w;
  }
};

// Loss sum(r * y) in double, for a CPU f32 output.
inline double weighted_sum(const Tensor& y, const Tensor& r) {
  double sum = 0;
  for (int64_t i = 0; i < y.numel(); ++i) sum += double(y.data<float>()[i]) * double(r.data<float>()[i]);
  return sum;
}

// Relative error between analytic and numeric derivatives of L with respect to `values`, on up to
// `samples` coordinates chosen at random (all of them when the tensor is small).
inline double check_coordinates(Tensor& values, const Tensor& analytic, const std::function<double()>& loss,
                                double h, int samples, uint64_t seed) {
  std::vector<int64_t> coords(size_t(values.numel()));
  for (size_t i = 0; i < coords.size(); ++i) coords[i] = int64_t(i);
  std::mt19937_64 rng(seed);
  std::shuffle(coords.begin(), coords.end(), rng);
  if (int64_t(coords.size()) > samples) coords.resize(size_t(samples));
  std::vector<double> numeric, exact;
  for (int64_t i : coords) {
    float& v = values.data<float>()[i];
    const float saved = v;
    v = saved + float(h);
    const double plus = loss();
    v = saved - float(h);
    const double minus = loss();
    v = saved;
    numeric.push_back((plus - minus) / (double(saved + float(h)) - double(saved - float(h))));
    exact.push_back(analytic.data<float>()[i]);
  }
  return relative_error(exact, numeric);
}

// Runs forward + backward once on the CPU and compares every gradient with finite differences.
inline GradCheckResult check_layer_gradients(Context& ctx, Layer& layer, Tensor x, double h = 1e-2,
                                             int samples = 200, uint64_t seed = 1234) {
  GradCheckResult result;
  Tensor y = layer.forward(ctx, x);
  Tensor r = random_tensor(y.shape(), seed);
  layer.zero_grad(ctx);
  Tensor dx = layer.backward(ctx, r).clone();
  std::vector<std::pair<std::string, Tensor>> parameter_grads;
  for (NamedParameter& np : layer.named_parameters())
    if (np.parameter->trainable) parameter_grads.push_back({np.name, np.parameter->grad.clone()});

  auto loss = [&] { return weighted_sum(layer.forward(ctx, x), r); };
  result.input_error = check_coordinates(x, dx, loss, h, samples, seed + 1);
  for (auto& [name, grad] : parameter_grads) {
    for (NamedParameter& np : layer.named_parameters())
      if (np.name == name)
        result.parameter_errors[name] = check_coordinates(np.parameter->value, grad, loss, h, samples, seed + 2);
  }
  return result;
}

}  // namespace cuface::testing
