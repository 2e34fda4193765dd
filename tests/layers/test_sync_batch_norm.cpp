// Synchronised BatchNorm in one process (the single process communicator, world size 1) on every
// backend: its path (moments about the running mean, statistics from them, the gradient's sums and the
// input-gradient correction; kernels/batchnorm.h) must give what the ordinary training BatchNorm gives.
// tests/mpi/test_sync_batch_norm.cpp checks 2 and 3 ranks on the CPU.
#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/reference.h"
#include "engine/communicator.h"
#include "layers/batch_norm.h"

namespace cuface {
namespace {

using testing::random_tensor;
using testing::relative_error;

class SyncBatchNormLayer : public testing::BackendTest {};

TEST_P(SyncBatchNormLayer, OneRankEqualsTheOrdinaryLayer) {
  std::unique_ptr<Communicator> single = make_single_process_communicator();
  for (bool relu : {false, true}) {
    BatchNormOptions options;
    options.relu = relu;
    BatchNorm plain(6, options), synced(6, options);
    synced.set_sync(single.get());
    Tensor x = random_tensor({3, 4, 5, 6}, 1, 3.0f, 6.0f), dy = random_tensor({3, 4, 5, 6}, 2);
    for (int step = 0; step < 2; ++step) {  // the second step shifts by a running mean that is not 0
      for (BatchNorm* bn : {&plain, &synced}) bn->to(device());
      Tensor y0 = plain.forward(ctx(), x.to(device())), dx0 = plain.backward(ctx(), dy.to(device()));
      Tensor y1 = synced.forward(ctx(), x.to(device())), dx1 = synced.backward(ctx(), dy.to(device()));
      EXPECT_LT(relative_error(y1.to(Device::CPU), y0.to(Device::CPU)), 1e-5) << "relu " << relu;
      EXPECT_LT(relative_error(dx1.to(Device::CPU), dx0.to(Device::CPU)), 1e-4) << "relu " << relu;
      for (auto [a, b] : {std::pair{&synced.running_mean(), &plain.running_mean()},
                          std::pair{&synced.running_var(), &plain.running_var()}})
        EXPECT_LT(relative_error(a->value.to(Device::CPU), b->value.to(Device::CPU)), 1e-6);
      EXPECT_LT(relative_error(synced.weight().grad.to(Device::CPU), plain.weight().grad.to(Device::CPU)), 1e-5);
      EXPECT_LT(relative_error(synced.bias().grad.to(Device::CPU), plain.bias().grad.to(Device::CPU)), 1e-5);
      EXPECT_EQ(synced.num_batches_tracked().value.to(Device::CPU).data<int32_t>()[0], step + 1);
    }
  }
}

CUFACE_ON_EVERY_BACKEND(SyncBatchNormLayer);

}  // namespace
}  // namespace cuface
