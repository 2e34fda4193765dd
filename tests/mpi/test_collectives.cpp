// Collectives over MPI against references each rank computes from every rank's (reproducible) input.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

#include "mpi/world.h"

namespace cuface::testing {
namespace {

TEST(Collectives, RanksAreDistinctAndLocal) {
  Communicator& comm = world();
  Context ctx(Device::CPU);
  if (const char* size = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    EXPECT_EQ(comm.world_size(), std::atoi(size));
  }
  if (comm.world_size() > 1) {
    EXPECT_STREQ(comm.backend(), "mpi");
  }
  Tensor mine = Tensor::empty({1, 2}, DType::I32);
  mine.data<int32_t>()[0] = comm.rank();
  mine.data<int32_t>()[1] = comm.local_rank();
  Tensor all = Tensor::empty({comm.world_size(), 2}, DType::I32);
  comm.all_gather(ctx, mine, all);
  for (int r = 0; r < comm.world_size(); ++r) {
    EXPECT_EQ(all.data<int32_t>()[2 * r], r);
    EXPECT_EQ(all.data<int32_t>()[2 * r + 1], r) << "one machine: local rank = rank";
  }
}

// |result - reference| within `tolerance` times the sum of the inputs' magnitudes, per element.
void expect_reduced(const Tensor& result, const std::vector<Tensor>& inputs, ReduceOp op, double tolerance) {
  int64_t n = result.numel();
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0, magnitude = 0, max = -INFINITY;
    for (const Tensor& x : inputs) {
      double v = x.dtype() == DType::BF16 ? to_float(x.data<bf16>()[i]) : x.data<float>()[i];
      sum += v, magnitude += std::fabs(v), max = std::max(max, v);
    }
    double expected = op == ReduceOp::Sum ? sum : op == ReduceOp::Mean ? sum / double(inputs.size()) : max;
    double scale = op == ReduceOp::Mean ? magnitude / double(inputs.size()) : magnitude;
    double got = result.dtype() == DType::BF16 ? to_float(result.data<bf16>()[i]) : result.data<float>()[i];
    if (op == ReduceOp::Max)
      ASSERT_EQ(got, expected) << "element " << i;  // max is exact
    else
      ASSERT_NEAR(got, expected, tolerance * scale + 1e-30) << reduce_op_name(op) << " element " << i;
  }
}

std::vector<Tensor> every_rank_input(const Shape& shape, uint64_t seed, DType dtype) {
  std::vector<Tensor> inputs;
  for (int r = 0; r < world().world_size(); ++r) {
    Tensor x = rank_input(shape, seed, r);
    if (dtype == DType::BF16) {
      Tensor rounded = Tensor::empty(shape, DType::BF16);
      for (int64_t i = 0; i < x.numel(); ++i) rounded.data<bf16>()[i] = to_bf16(x.data<float>()[i]);
      x = rounded;
    }
    inputs.push_back(x);
  }
  return inputs;
}

TEST(Collectives, AllReduceF32) {
  Context ctx(Device::CPU);
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
    std::vector<Tensor> inputs = every_rank_input({37, 3}, 1, DType::F32);
    Tensor x = inputs[size_t(world().rank())].clone();
    world().all_reduce(ctx, x, op);
    expect_reduced(x, inputs, op, 4 * 0x1p-24);
    EXPECT_TRUE(same_on_every_rank(ctx, x)) << reduce_op_name(op);
  }
}

TEST(Collectives, AllReduceBf16) {
  Context ctx(Device::CPU);
  double k = world().world_size();
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max}) {
    std::vector<Tensor> inputs = every_rank_input({101}, 2, DType::BF16);
    Tensor x = inputs[size_t(world().rank())].clone();
    world().all_reduce(ctx, x, op);
    expect_reduced(x, inputs, op, (k + 1) * 0x1p-8);  // a rounding per partial sum, one for the mean
    EXPECT_TRUE(same_on_every_rank(ctx, x)) << reduce_op_name(op);
  }
}

TEST(Collectives, AllReduceF32OverBf16Wire) {
  Context ctx(Device::CPU);
  double k = world().world_size();
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean}) {
    std::vector<Tensor> inputs = every_rank_input({64, 5}, 3, DType::F32);
    Tensor x = inputs[size_t(world().rank())].clone();
    world().start_all_reduce(ctx, x, op, DType::BF16)->wait();
    expect_reduced(x, inputs, op, (k + 1) * 0x1p-8);
    EXPECT_TRUE(same_on_every_rank(ctx, x));
    if (op == ReduceOp::Sum && world().world_size() > 1) {  // the sum itself travelled as bf16
      for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(x.data<float>()[i], to_float(to_bf16(x.data<float>()[i])));
    }
  }
}

TEST(Collectives, AllReduceI32IsExact) {
  Context ctx(Device::CPU);
  int k = world().world_size();
  Tensor x = Tensor::empty({9}, DType::I32);
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
    for (int i = 0; i < 9; ++i) x.data<int32_t>()[i] = (world().rank() + 1) * (i - 4) * 1000003;
    world().all_reduce(ctx, x, op);
    for (int i = 0; i < 9; ++i) {
      int32_t expected = op == ReduceOp::Sum ? k * (k + 1) / 2 * (i - 4) * 1000003 : (i >= 4 ? k : 1) * (i - 4) * 1000003;
      EXPECT_EQ(x.data<int32_t>()[i], expected) << reduce_op_name(op) << " " << i;
    }
  }
}

TEST(Collectives, BroadcastFromEveryRoot) {
  Context ctx(Device::CPU);
  for (int root = 0; root < world().world_size(); ++root) {
    Tensor x = rank_input({6, 7}, 4, world().rank());
    world().broadcast(ctx, x, root);
    Tensor expected = rank_input({6, 7}, 4, root);
    EXPECT_EQ(std::memcmp(x.raw(), expected.raw(), x.bytes()), 0) << "root " << root;
    Tensor bytes = Tensor::empty({3}, DType::U8);
    for (int i = 0; i < 3; ++i) bytes.data<uint8_t>()[i] = uint8_t(world().rank() * 10 + i);
    world().broadcast(ctx, bytes, root);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(bytes.data<uint8_t>()[i], root * 10 + i);
  }
}

TEST(Collectives, AllGatherInRankOrder) {
  Context ctx(Device::CPU);
  int k = world().world_size();
  Tensor mine = rank_input({5, 2}, 5, world().rank());
  Tensor all = Tensor::zeros({5 * k, 2});
  world().all_gather(ctx, mine, all);
  for (int r = 0; r < k; ++r) {
    Tensor expected = rank_input({5, 2}, 5, r);
    EXPECT_EQ(std::memcmp(all.slice(5 * r, 5 * r + 5).raw(), expected.raw(), expected.bytes()), 0) << r;
  }
}

TEST(Collectives, ScalarsInFloat64) {
  int k = world().world_size();
  double r = world().rank();
  std::vector<double> values{r + 0.5, -r, std::ldexp(1.0, world().rank())};
  world().all_reduce_scalars(values);
  EXPECT_EQ(values, (std::vector<double>{k * (k - 1) / 2.0 + 0.5 * k, -k * (k - 1) / 2.0, std::ldexp(1.0, k) - 1}));
  values = {r, 3.0};
  world().all_reduce_scalars(values, ReduceOp::Mean);
  EXPECT_EQ(values, (std::vector<double>{(k - 1) / 2.0, 3.0}));
  values = {r, -r};
  world().all_reduce_scalars(values, ReduceOp::Max);
  EXPECT_EQ(values, (std::vector<double>{k - 1.0, 0.0}));
}

TEST(Collectives, BarrierWaitsForTheLastRank) {
  int last = world().world_size() - 1;
  auto start = std::chrono::steady_clock::now();
  if (world().rank() == last) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  world().barrier();
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.25);
}

TEST(Collectives, NonBlockingAllReducesFinishInAnyOrder) {
  Context ctx(Device::CPU);
  std::vector<Tensor> a_inputs = every_rank_input({1000}, 6, DType::F32);
  std::vector<Tensor> b_inputs = every_rank_input({3}, 7, DType::F32);
  Tensor a = a_inputs[size_t(world().rank())].clone(), b = b_inputs[size_t(world().rank())].clone();
  auto pending_a = world().start_all_reduce(ctx, a, ReduceOp::Sum, DType::F32);
  auto pending_b = world().start_all_reduce(ctx, b, ReduceOp::Max, DType::F32);
  pending_b->wait();
  pending_a->wait();
  expect_reduced(a, a_inputs, ReduceOp::Sum, 4 * 0x1p-24);
  expect_reduced(b, b_inputs, ReduceOp::Max, 0);
}

TEST(Collectives, RejectsBadArgumentsOnEveryRank) {
  Context ctx(Device::CPU);
  Tensor counts = Tensor::zeros({4}, DType::I32);
  EXPECT_THROW(world().all_reduce(ctx, counts, ReduceOp::Mean), Error);
  Tensor x = Tensor::zeros({4, 2});
  Tensor wrong = Tensor::zeros({4 * world().world_size() + 1, 2});
  EXPECT_THROW(world().all_gather(ctx, x, wrong), Error);
  EXPECT_THROW(world().broadcast(ctx, x, world().world_size()), Error);
  world().barrier();  // still usable
}

}  // namespace
}  // namespace cuface::testing
