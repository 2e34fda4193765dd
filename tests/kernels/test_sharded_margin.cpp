// The class-sharded margin kernels against the fused one (kernels/margin.h) on every backend: the
// classes split into two shards in one process, the two all-reduces between the kernels done by hand
// on the host (max, then sum), exactly as ShardedMarginHead does them across ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/backends.h"
#include "common/reference.h"
#include "kernels/sharded_margin.h"

namespace cuface {
namespace {

using testing::random_tensor;
using testing::relative_error;

class ShardedMarginKernels : public testing::BackendTest {};

// Columns [first, first + count) of a host [rows, C] tensor, on `device`.
Tensor columns(const Tensor& host, int64_t first, int64_t count, Device device) {
  const int64_t rows = host.size(0), classes = host.size(1);
  Tensor out = Tensor::empty({rows, count});
  for (int64_t i = 0; i < rows; ++i)
    std::copy_n(host.data<float>() + i * classes + first, count, out.data<float>() + i * count);
  return out.to(device);
}

TEST_P(ShardedMarginKernels, TwoShardsEqualTheFusedKernel) {
  const int64_t rows = 9, classes = 23, split = 10;  // shards [0, 10) and [10, 23)
  for (MarginType type : {MarginType::ArcFace, MarginType::CosFace, MarginType::Combined}) {
    MarginParams params = default_margin_params(type);
    params.s = 8.0f;
    Tensor cos = random_tensor({rows, classes}, 3, -0.7f, 0.7f);
    Tensor labels_host = Tensor::empty({rows}, DType::I32);
    for (int64_t i = 0; i < rows; ++i) labels_host.data<int32_t>()[i] = int32_t((i * 5 + 2) % classes);
    labels_host.data<int32_t>()[4] = -1;
    for (int64_t i = 0; i < rows; i += 2)  // some rows near their target, so accuracy is not 0
      cos.data<float>()[i * classes + std::max(labels_host.data<int32_t>()[i], 0)] = 0.9f;
    Tensor labels = labels_host.to(device());

    Tensor fused = cos.to(device()), fused_stats = Tensor::empty({rows, kRowStatColumns}, DType::F32, device());
    margin_softmax_ce(ctx(), fused, labels, params, fused_stats);

    const int64_t firsts[2] = {0, split}, counts[2] = {split, classes - split};
    Tensor z[2], maxima[2], target[2];
    for (int s = 0; s < 2; ++s) {
      z[s] = columns(cos, firsts[s], counts[s], device());
      maxima[s] = Tensor::empty({2, rows}, DType::F32, device());
      target[s] = Tensor::empty({4, rows}, DType::F32, device());
      sharded_margin_logits(ctx(), z[s], labels, firsts[s], classes, params, maxima[s], target[s]);
    }
    Tensor a = maxima[0].to(Device::CPU), b = maxima[1].to(Device::CPU);  // all_reduce(Max)
    for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = std::max(a.data<float>()[i], b.data<float>()[i]);
    for (int s = 0; s < 2; ++s) {
      maxima[s] = a.to(device());
      sharded_margin_exp_sums(ctx(), z[s], labels, maxima[s], target[s]);
    }
    a = target[0].to(Device::CPU), b = target[1].to(Device::CPU);  // all_reduce(Sum)
    for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] += b.data<float>()[i];
    Tensor stats[2];
    for (int s = 0; s < 2; ++s) {
      target[s] = a.to(device());
      stats[s] = Tensor::empty({rows, kRowStatColumns}, DType::F32, device());
      sharded_margin_gradient(ctx(), z[s], labels, firsts[s], params, maxima[s], target[s], stats[s]);
    }

    const Tensor expected = fused.to(Device::CPU), expected_stats = fused_stats.to(Device::CPU);
    for (int s = 0; s < 2; ++s) {
      EXPECT_LT(relative_error(z[s], columns(expected, firsts[s], counts[s], Device::CPU)), 1e-5)
          << margin_type_name(type) << " shard " << s;
      EXPECT_LT(relative_error(stats[s], expected_stats), 1e-5) << margin_type_name(type) << " shard " << s;
    }
  }
}

TEST_P(ShardedMarginKernels, ALabelOutsideTheClassesIsAnErrorOrNan) {
  const int64_t classes = 6;
  Tensor z = random_tensor({2, 3}, 5).to(device());
  Tensor labels_host = Tensor::empty({2}, DType::I32);
  labels_host.data<int32_t>()[0] = 1;
  labels_host.data<int32_t>()[1] = int32_t(classes);  // one past the last class
  Tensor labels = labels_host.to(device());
  Tensor maxima = Tensor::empty({2, 2}, DType::F32, device()), target = Tensor::empty({4, 2}, DType::F32, device());
  MarginParams params = default_margin_params(MarginType::CosFace);
  if (device() == Device::CPU) {
    EXPECT_THROW(sharded_margin_logits(ctx(), z, labels, 0, classes, params, maxima, target), Error);
  } else {
    sharded_margin_logits(ctx(), z, labels, 0, classes, params, maxima, target);
    EXPECT_TRUE(std::isnan(target.to(Device::CPU).data<float>()[2 + 1])) << "row 1's target logit";
  }
  EXPECT_THROW(sharded_margin_logits(ctx(), z, labels, 4, classes, params, maxima, target), Error)
      << "columns [4, 7) of 6 classes";
}

CUFACE_ON_EVERY_BACKEND(ShardedMarginKernels);

}  // namespace
}  // namespace cuface
