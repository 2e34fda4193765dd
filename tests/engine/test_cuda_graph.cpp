// CudaGraph: a captured chain of kernels replays on new inputs with the captured addresses, keeps
// its memory to itself while it lives, and an uncapturable function falls back with CUDA's reason.
#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/reference.h"
#include "engine/allocator.h"
#include "engine/cuda_graph.h"
#include "kernels/elementwise.h"

namespace cuface {
namespace {

TEST(CudaGraph, CpuContextHasNoGraphs) {
  Context ctx(Device::CPU);
  CudaGraph graph;
  std::string why;
  bool ran = false;
  EXPECT_FALSE(graph.capture(ctx, [&] { ran = true; }, &why));
  EXPECT_FALSE(ran);
  EXPECT_NE(why.find("CUDA"), std::string::npos) << why;
  EXPECT_FALSE(graph.captured());
  EXPECT_THROW(graph.replay(ctx), Error);
}

// out = 3 (x + x) through two temporaries the captured work allocates.
void doubled_then_tripled(Context& ctx, const Tensor& x, Tensor& out, void** temporary) {
  Tensor sum = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  *temporary = sum.raw();
  add(ctx, x, x, sum);
  scale(ctx, 3.0f, sum);
  copy(ctx, sum, out);
}

TEST(CudaGraphCuda, ReplaysOnTheInputsValuesAtEachReplay) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  const int64_t n = 1000;
  Tensor x = Tensor::empty({n}, DType::F32, Device::CUDA), out = Tensor::empty({n}, DType::F32, Device::CUDA);
  fill(ctx, x, 1.0f);
  void* temporary = nullptr;
  doubled_then_tripled(ctx, x, out, &temporary);  // eager first, as a trainer warms up
  CudaGraph graph;
  std::string why;
  ASSERT_TRUE(graph.capture(ctx, [&] { doubled_then_tripled(ctx, x, out, &temporary); }, &why)) << why;
  for (int round = 0; round < 3; ++round) {
    const Tensor values = testing::random_tensor({n}, uint64_t(10 + round));
    x.copy_from(values);
    graph.replay(ctx);
    const Tensor result = out.to(Device::CPU);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(result.data<float>()[i], 3.0f * (values.data<float>()[i] + values.data<float>()[i])) << i;
  }
}

TEST(CudaGraphCuda, ItsMemoryIsNotHandedOutWhileItLives) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  const int64_t n = 4321;  // a size no other tensor here has: the cache's answer for it is the graph's block
  Tensor x = Tensor::zeros({n}, DType::F32, Device::CUDA), out = Tensor::empty({n}, DType::F32, Device::CUDA);
  CudaGraph graph;
  std::string why;
  void* temporary = nullptr;
  ASSERT_TRUE(graph.capture(ctx, [&] { doubled_then_tripled(ctx, x, out, &temporary); }, &why)) << why;
  ASSERT_NE(temporary, nullptr);
  {
    Tensor other = Tensor::empty({n}, DType::F32, Device::CUDA);
    EXPECT_NE(other.raw(), temporary) << "a replay would overwrite this tensor";
  }
  // A tensor the capture allocated and the host kept (a layer's saved activation), freed later.
  Tensor kept;
  CudaGraph keeper;
  ASSERT_TRUE(keeper.capture(ctx, [&] { kept = Tensor::empty({n + 1}, DType::F32, Device::CUDA); }, &why)) << why;
  void* kept_address = kept.raw();
  kept = Tensor();
  {
    Tensor other = Tensor::empty({n + 1}, DType::F32, Device::CUDA);
    EXPECT_NE(other.raw(), kept_address) << "a replay of the keeper would overwrite this tensor";
  }
  graph.reset();
  Tensor after = Tensor::empty({n}, DType::F32, Device::CUDA);
  Tensor after2 = Tensor::empty({n}, DType::F32, Device::CUDA);
  EXPECT_TRUE(after.raw() == temporary || after2.raw() == temporary) << "the destroyed graph's block is cached again";
}

TEST(CudaGraphCuda, AStepThatSynchronisesFallsBackWithTheReason) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  Tensor x = Tensor::zeros({64}, DType::F32, Device::CUDA), out = Tensor::empty({64}, DType::F32, Device::CUDA);
  CudaGraph graph;
  std::string why;
  void* temporary = nullptr;
  EXPECT_FALSE(graph.capture(ctx, [&] {
    doubled_then_tripled(ctx, x, out, &temporary);
    ctx.synchronize();  // a host wait cannot be part of a graph
  }, &why));
  EXPECT_FALSE(graph.captured());
  EXPECT_NE(why.find("capturing"), std::string::npos) << why;
  // The context works eagerly afterwards.
  fill(ctx, x, 2.0f);
  doubled_then_tripled(ctx, x, out, &temporary);
  EXPECT_EQ(out.to(Device::CPU).data<float>()[5], 12.0f);
}

}  // namespace
}  // namespace cuface
