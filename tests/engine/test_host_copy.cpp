// HostCopy: a device tensor's value at the moment the copy was queued reaches the host, while work
// queued after it (here: kernels overwriting the source) still runs; on the CPU it is a plain copy.
#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/reference.h"
#include "engine/host_copy.h"
#include "kernels/elementwise.h"

namespace cuface {
namespace {

TEST(HostCopy, CpuCopiesAtOnce) {
  Context ctx(Device::CPU);
  HostCopy copy;
  EXPECT_FALSE(copy.started());
  EXPECT_THROW(copy.wait(), Error);
  Tensor source = testing::random_tensor({4}, 1);
  copy.start(ctx, source);
  fill(ctx, source, 7.0f);  // later changes to the source do not reach the copy
  const Tensor& host = copy.wait();
  const Tensor want = testing::random_tensor({4}, 1);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(host.data<float>()[i], want.data<float>()[i]);
}

// The copy sits between two fills on the stream: it must hold the first value, never the second, and
// wait() must not return before the first fill (queued, not finished) has run.
TEST(HostCopyCuda, HoldsTheValueQueuedBeforeItNotAfter) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  HostCopy copy;
  Tensor source = Tensor::zeros({1 << 16}, DType::F32, Device::CUDA);
  for (int round = 1; round <= 3; ++round) {
    fill(ctx, source, float(round));
    copy.start(ctx, source.slice(0, 4));
    fill(ctx, source, -1.0f);
    const Tensor& host = copy.wait();
    ASSERT_TRUE(host.is_pinned());
    for (int i = 0; i < 4; ++i) ASSERT_EQ(host.data<float>()[i], float(round)) << "round " << round;
  }
  copy.start(ctx, source.slice(0, 4));  // started twice without a wait: the first is waited for
  copy.start(ctx, source.slice(0, 4));
  EXPECT_EQ(copy.wait().data<float>()[0], -1.0f);
}

}  // namespace
}  // namespace cuface
