// The single-process communicator (what `cuface train` gets without an MPI launcher), gradient
// bucket layout, and NCCL with one rank on a GPU. The multi-process tests are in tests/mpi.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "common/backends.h"
#include "common/reference.h"
#include "engine/communicator.h"
#include "engine/grad_buckets.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

#if CUFACE_HAS_MPI
#include <mpi.h>
#endif

namespace cuface {
namespace {

using testing::random_tensor;

bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor ha = a.to(Device::CPU), hb = b.to(Device::CPU);
  return ha.bytes() == hb.bytes() && std::memcmp(ha.raw(), hb.raw(), ha.bytes()) == 0;
}

TEST(SingleProcessCommunicator, WithoutLauncherIsOneProcessAndLeavesMpiAlone) {
  if (mpi_launch_detected()) GTEST_SKIP() << "running under an MPI launcher";
  auto comm = make_communicator(Device::CPU);
  EXPECT_STREQ(comm->backend(), "single");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(comm->local_rank(), 0);
#if CUFACE_HAS_MPI
  int initialized = 1;
  MPI_Initialized(&initialized);
  EXPECT_EQ(initialized, 0) << "MPI must not be initialised without a launcher";
#endif
}

TEST(SingleProcessCommunicator, CollectivesOverOneRank) {
  auto comm = make_single_process_communicator();
  Context ctx(Device::CPU);
  Tensor x = random_tensor({5, 3}, 1);
  Tensor original = x.clone();
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
    comm->all_reduce(ctx, x, op);
    EXPECT_TRUE(same_bits(x, original)) << reduce_op_name(op);
  }
  comm->broadcast(ctx, x, 0);
  EXPECT_TRUE(same_bits(x, original));
  Tensor gathered = Tensor::zeros({5, 3});
  comm->all_gather(ctx, x, gathered);
  EXPECT_TRUE(same_bits(gathered, original));
  std::vector<double> values{1.5, -2.0};
  comm->all_reduce_scalars(values, ReduceOp::Mean);
  EXPECT_EQ(values, (std::vector<double>{1.5, -2.0}));
  comm->barrier();
}

TEST(SingleProcessCommunicator, RejectsBadArguments) {
  auto comm = make_single_process_communicator();
  Context ctx(Device::CPU);
  Tensor counts = Tensor::zeros({4}, DType::I32);
  EXPECT_THROW(comm->all_reduce(ctx, counts, ReduceOp::Mean), Error);  // mean of integers
  Tensor half = Tensor::zeros({4}, DType::F16);
  EXPECT_THROW(comm->all_reduce(ctx, half, ReduceOp::Sum), Error);
  EXPECT_THROW(comm->start_all_reduce(ctx, counts, ReduceOp::Sum, DType::BF16), Error);  // i32 as bf16
  Tensor x = Tensor::zeros({4, 2});
  Tensor wrong = Tensor::zeros({4, 3});
  EXPECT_THROW(comm->all_gather(ctx, x, wrong), Error);
  EXPECT_THROW(comm->broadcast(ctx, x, 1), Error);  // no rank 1
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(CommunicationTimeout, ReadFromEnvironment) {
  {
    ScopedEnv unset("CUFACE_COMM_TIMEOUT", nullptr);
    EXPECT_EQ(communication_timeout_seconds(), 300.0);
  }
  {
    ScopedEnv set("CUFACE_COMM_TIMEOUT", "2.5");
    EXPECT_EQ(communication_timeout_seconds(), 2.5);
  }
  for (const char* bad : {"soon", "0", "-3", "10s"}) {
    ScopedEnv set("CUFACE_COMM_TIMEOUT", bad);
    EXPECT_THROW(communication_timeout_seconds(), Error) << bad;
  }
  EXPECT_EQ(no_progress_message(3, "all_reduce", 5),
            "rank 3: no progress in all_reduce for 5 s; another rank probably died (limit: CUFACE_COMM_TIMEOUT)");
}

TEST(Communicator, LauncherWithoutMpiBuildIsAClearError) {
#if CUFACE_HAS_MPI
  GTEST_SKIP() << "this build has MPI (tests/mpi covers launches)";
#else
  ScopedEnv launched("OMPI_COMM_WORLD_SIZE", "2");
  try {
    make_communicator(Device::CPU);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no MPI"), std::string::npos) << error.what();
  }
#endif
}

// ---- gradient buckets: layout (the reductions themselves are tested under MPI) --------------------

std::vector<Shape> odd_shapes() { return {{7, 3}, {5}, {1}, {13, 2, 3}, {4, 4, 4}, {}, {3}, {129}, {2, 2}}; }

class GradBucketsLayout : public testing::BackendTest {};

TEST_P(GradBucketsLayout, ViewsPartitionTheBucketsInOrder) {
  auto comm = make_single_process_communicator();
  std::vector<Shape> shapes = odd_shapes();
  for (size_t limit : {size_t(1), size_t(100), size_t(256), size_t(1000), size_t(1) << 20}) {
    GradBuckets buckets(*comm, shapes, device(), limit);
    ASSERT_EQ(buckets.size(), int(shapes.size()));
    std::vector<int64_t> used(size_t(buckets.bucket_count()), 0);
    for (int i = 0; i < buckets.size(); ++i) {
      const Tensor& g = buckets.grad(i);
      EXPECT_EQ(g.shape(), shapes[size_t(i)]);
      EXPECT_EQ(g.device(), device());
      int b = buckets.bucket_of(i);
      if (i > 0) {
        EXPECT_TRUE(b == buckets.bucket_of(i - 1) || b == buckets.bucket_of(i - 1) + 1) << "order kept";
      }
      const Tensor& flat = buckets.bucket(b);
      auto offset = static_cast<const char*>(g.raw()) - static_cast<const char*>(flat.raw());
      EXPECT_EQ(offset % 64, 0) << "64-byte aligned";
      EXPECT_EQ(offset, used[size_t(b)] * 4) << "packed in order";
      used[size_t(b)] = (g.numel() + 15) / 16 * 16 + offset / 4;
    }
    std::vector<int> members(size_t(buckets.bucket_count()), 0);
    std::vector<int64_t> first_length(size_t(buckets.bucket_count()), -1);  // padded floats
    for (int i = 0; i < buckets.size(); ++i) {
      int b = buckets.bucket_of(i);
      if (members[size_t(b)]++ == 0) first_length[size_t(b)] = (buckets.grad(i).numel() + 15) / 16 * 16;
    }
    for (int b = 0; b < buckets.bucket_count(); ++b) {
      EXPECT_EQ(used[size_t(b)], buckets.bucket(b).numel());
      // Within the limit, unless one gradient alone exceeds it; and full: the next gradient did not fit.
      EXPECT_TRUE(buckets.bucket(b).bytes() <= limit || members[size_t(b)] == 1) << "bucket " << b;
      if (b + 1 < buckets.bucket_count()) {
        EXPECT_GT(size_t(used[size_t(b)] + first_length[size_t(b) + 1]) * 4, limit) << "bucket " << b;
      }
    }
    if (limit == 1) {
      EXPECT_EQ(buckets.bucket_count(), int(shapes.size()));
    }
    if (limit == size_t(1) << 20) {
      EXPECT_EQ(buckets.bucket_count(), 1);
    }
  }
}

TEST_P(GradBucketsLayout, ZeroWriteThroughAndWorldOfOne) {
  auto comm = make_single_process_communicator();
  GradBuckets buckets(*comm, odd_shapes(), device(), 256);
  std::vector<Tensor> values;
  for (int i = 0; i < buckets.size(); ++i) {
    values.push_back(random_tensor(buckets.grad(i).shape(), 10 + uint64_t(i)));
    Tensor g = buckets.grad(i);
    g.copy_from(values.back().to(device()));  // layers write through the view
  }
  for (int i = buckets.size() - 1; i >= 0; --i) buckets.mark_ready(ctx(), i);
  EXPECT_THROW(buckets.mark_ready(ctx(), 0), Error);  // twice in one step
  buckets.wait(ctx());
  ctx().synchronize();
  for (int i = 0; i < buckets.size(); ++i) EXPECT_TRUE(same_bits(buckets.grad(i), values[size_t(i)])) << i;
  buckets.zero(ctx());
  ctx().synchronize();
  for (int b = 0; b < buckets.bucket_count(); ++b) {
    Tensor flat = buckets.bucket(b).to(Device::CPU);
    for (int64_t k = 0; k < flat.numel(); ++k) ASSERT_EQ(flat.data<float>()[k], 0.0f);
  }
  buckets.mark_ready(ctx(), 0);  // a new step may mark again
  buckets.wait(ctx());
}

CUFACE_ON_EVERY_BACKEND(GradBucketsLayout);

// ---- NCCL, one rank, on a GPU ------------------------------------------------------------------------

TEST(NcclCommunicator, OneRankOnTheGpu) {
#if !CUFACE_HAS_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  CUFACE_REQUIRE_GPU();
  auto comm = make_nccl_communicator(make_single_process_communicator());
  EXPECT_STREQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->world_size(), 1);
  Context ctx(Device::CUDA, comm->local_rank());
  Tensor host = random_tensor({1000, 3}, 5, -100.0f, 100.0f);
  Tensor x = host.to(Device::CUDA);
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
    comm->all_reduce(ctx, x, op);
    ctx.synchronize();
    EXPECT_TRUE(same_bits(x, host)) << reduce_op_name(op);
  }
  // bf16 on the wire: each value comes back rounded to bf16 once.
  comm->start_all_reduce(ctx, x, ReduceOp::Mean, DType::BF16)->wait();
  Tensor rounded = x.to(Device::CPU);
  for (int64_t i = 0; i < host.numel(); ++i)
    ASSERT_EQ(rounded.data<float>()[i], to_float(to_bf16(host.data<float>()[i]))) << i;
  // Other dtypes, broadcast and all-gather; CPU tensors and scalars go to the host communicator.
  Tensor counts_host = Tensor::empty({17}, DType::I32);
  for (int i = 0; i < 17; ++i) counts_host.data<int32_t>()[i] = i * 7 - 40;
  Tensor counts = counts_host.to(Device::CUDA);
  comm->all_reduce(ctx, counts, ReduceOp::Sum);
  comm->broadcast(ctx, counts, 0);
  ctx.synchronize();
  EXPECT_TRUE(same_bits(counts, counts_host));
  Tensor gathered = Tensor::zeros({1000, 3}, DType::F32, Device::CUDA);
  Tensor original = host.to(Device::CUDA);
  comm->all_gather(ctx, original, gathered);
  ctx.synchronize();
  EXPECT_TRUE(same_bits(gathered, host));
  Tensor cpu_tensor = host.clone();
  comm->all_reduce(ctx, cpu_tensor, ReduceOp::Sum);
  EXPECT_TRUE(same_bits(cpu_tensor, host));
  std::vector<double> values{2.0};
  comm->all_reduce_scalars(values);
  EXPECT_EQ(values[0], 2.0);

  // Buckets overlapping with work queued after them on the compute stream.
  GradBuckets buckets(*comm, odd_shapes(), Device::CUDA, 256, DType::BF16);
  std::vector<Tensor> values_in;
  for (int i = 0; i < buckets.size(); ++i) {
    values_in.push_back(random_tensor(buckets.grad(i).shape(), 30 + uint64_t(i)));
    Tensor g = buckets.grad(i);
    g.copy_from(values_in.back().to(Device::CUDA));
    buckets.mark_ready(ctx, i);
  }
  buckets.wait(ctx);
  ctx.synchronize();
  for (int i = 0; i < buckets.size(); ++i) {
    Tensor g = buckets.grad(i).to(Device::CPU);
    for (int64_t k = 0; k < g.numel(); ++k)
      ASSERT_EQ(g.data<float>()[k], to_float(to_bf16(values_in[size_t(i)].data<float>()[k]))) << i;
  }
#endif
}

// Polling a collective that is still queued (GradBuckets::mark_ready does it for every bucket in
// flight) must not leave CUDA's "not ready" behind as an error for the next kernel launch's check.
TEST(NcclCommunicator, PollingAnUnfinishedCollectiveLeavesNoError) {
#if !CUFACE_HAS_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  CUFACE_REQUIRE_GPU();
  auto comm = make_nccl_communicator(make_single_process_communicator());
  Context ctx(Device::CUDA, comm->local_rank());
  const int64_t n = 4096;  // ~140 GFLOP in fp32: milliseconds of queued work ahead of the collective
  Tensor a = random_tensor({n, n}, 61).to(Device::CUDA);
  Tensor c = Tensor::empty({n, n}, DType::F32, Device::CUDA), d = Tensor::empty({n, n}, DType::F32, Device::CUDA);
  Tensor x = random_tensor({1 << 20}, 62).to(Device::CUDA);
  const Tensor expected = x.to(Device::CPU);
  // Warm-up: the first collective (NCCL's lazy set-up, its kernels loaded on first launch) and the
  // first cuBLAS call can block the host for longer than the GEMMs below run, which would let the
  // collective finish before test() is asked. A sum over one rank leaves x as it is.
  comm->start_all_reduce(ctx, x, ReduceOp::Sum, DType::F32)->wait();
  gemm(ctx, false, false, 1.0f, a, a, 0.0f, c);
  ctx.synchronize();
  gemm(ctx, false, false, 1.0f, a, a, 0.0f, c);
  gemm(ctx, false, false, 1.0f, c, a, 0.0f, d);
  auto pending = comm->start_all_reduce(ctx, x, ReduceOp::Sum, DType::F32);
  EXPECT_FALSE(pending->test());  // still behind the GEMMs
  Tensor y = Tensor::empty({1 << 20}, DType::F32, Device::CUDA);
  EXPECT_NO_THROW(fill(ctx, y, 2.0f));  // checks cudaGetLastError after its launch
  pending->wait();
  ctx.synchronize();
  EXPECT_TRUE(pending->test());
  EXPECT_TRUE(same_bits(x, expected));
#endif
}

// Gradient buckets with the GPU far behind the host. A bucket's all-reduce must read its gradient only
// after the work that wrote it (here a copy queued behind milliseconds of GEMMs), and work queued after
// wait(), or after an unwaited collective is dropped, must see the reduced values. With bf16 on the
// wire, one rank's mean rounds each value to bf16: a collective that ran ahead of its producer leaves
// the producer's unrounded values, and so does a consumer that ran ahead of the collective. The second
// gradient (256 MB in the same bucket) keeps the communication stream busy for the latter to show.
TEST(NcclCommunicator, BucketsOrderAfterTheirProducersAndBeforeTheirConsumers) {
#if !CUFACE_HAS_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  CUFACE_REQUIRE_GPU();
  auto comm = make_nccl_communicator(make_single_process_communicator());
  Context ctx(Device::CUDA, comm->local_rank());
  const int64_t n = testing::kEmulatedCuda ? 64 : 4096, side = 64;  // GEMMs of n x n: ~140 GFLOP each
  Tensor a = random_tensor({n, n}, 81).to(Device::CUDA), c = Tensor::empty({n, n}, DType::F32, Device::CUDA);
  const Tensor values = random_tensor({side, side}, 82);
  const Tensor device_values = values.to(Device::CUDA);
  GradBuckets buckets(*comm, {Shape{side, side}, Shape{int64_t(1) << (testing::kEmulatedCuda ? 16 : 26)}}, Device::CUDA, size_t(1) << 30, DType::BF16);
  ASSERT_EQ(buckets.bucket_count(), 1);
  Tensor flat = buckets.bucket(0), gradient = buckets.grad(0);
  Tensor seen = Tensor::empty({side, side}, DType::F32, Device::CUDA);
  // Warm-up: NCCL's and cuBLAS's first calls, and the bf16 message's first allocation, can block the host.
  comm->start_all_reduce(ctx, flat, ReduceOp::Mean, DType::BF16)->wait();
  gemm(ctx, false, false, 1.0f, a, a, 0.0f, c);
  ctx.synchronize();
  auto expect_rounded = [&](const char* what) {
    const Tensor got = seen.to(Device::CPU);
    for (int64_t i = 0; i < got.numel(); ++i)
      ASSERT_EQ(got.data<float>()[i], to_float(to_bf16(values.data<float>()[i]))) << what << ", value " << i;
  };

  for (int k = 0; k < 8; ++k) gemm(ctx, false, false, 1.0f, a, a, 0.0f, c);
  copy(ctx, device_values, gradient);  // the producer, behind the GEMMs
  buckets.mark_ready(ctx, 0);
  buckets.mark_ready(ctx, 1);  // the bucket starts here
  buckets.wait(ctx);
  copy(ctx, gradient, seen);  // the consumer
  expect_rounded("after wait()");

  copy(ctx, device_values, gradient);
  comm->start_all_reduce(ctx, flat, ReduceOp::Mean, DType::BF16).reset();  // dropped unwaited
  copy(ctx, gradient, seen);
  expect_rounded("after dropping an unwaited collective");
#endif
}

}  // namespace
}  // namespace cuface
