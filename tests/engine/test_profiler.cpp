// The --profile timer: scopes on a context without a profiler do nothing; with one, each kind's calls,
// time (the clock on the CPU, CUDA events on the stream on a GPU) and rates add up as recorded.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "common/backends.h"
#include "face/scratch_dir.h"
#include "engine/profiler.h"
#include "kernels/elementwise.h"

namespace cuface {
namespace {

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST(Profiler, AddsUpEachKindsCallsTimeAndWorkOnTheCpu) {
  Context ctx(Device::CPU);
  { ProfileScope unprofiled(ctx, "Conv2d", Pass::Forward, {1e9, 0}); }  // no profiler: nothing recorded

  Profiler profiler;
  ctx.set_profiler(&profiler);
  for (int i = 0; i < 3; ++i) {
    ProfileScope scope(ctx, "Conv2d", Pass::Forward);
    sleep_ms(20);
    scope.set_work({2e6, 0});
  }
  {
    ProfileScope scope(ctx, "Conv2d", Pass::Backward, {0, 1e6});
    sleep_ms(10);
  }
  ctx.set_profiler(nullptr);
  { ProfileScope detached(ctx, "Conv2d", Pass::Forward); }

  const std::vector<Profiler::Row> rows = profiler.rows(ctx);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].kind, "Conv2d");
  EXPECT_EQ(rows[0].pass, Pass::Forward);  // the longest first
  EXPECT_EQ(rows[0].calls, 3);
  EXPECT_EQ(rows[0].work.flops, 6e6);
  EXPECT_GE(rows[0].seconds, 0.060);
  EXPECT_LT(rows[0].seconds, 1.0);
  EXPECT_EQ(rows[1].pass, Pass::Backward);
  EXPECT_EQ(rows[1].calls, 1);
  EXPECT_GE(rows[1].seconds, 0.010);

  const double wall = 2 * (rows[0].seconds + rows[1].seconds);
  const std::string table = profiler.table(ctx, wall, "title line");
  EXPECT_EQ(table.rfind("title line\n", 0), 0u) << table;
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.1f GFLOP/s", 6e6 / rows[0].seconds / 1e9);
  EXPECT_NE(table.find(rate), std::string::npos) << table;
  EXPECT_NE(table.find("GB/s"), std::string::npos) << table;
  EXPECT_NE(table.find("(outside the scopes)"), std::string::npos) << table;
  EXPECT_NE(table.find(" 50.0%"), std::string::npos) << "outside = half the wall time\n" << table;

  testing::ScratchDir dir;
  profiler.write_csv(ctx, dir / "profile.csv", wall);
  std::ifstream csv(dir / "profile.csv");
  std::string header, first;
  std::getline(csv, header);
  std::getline(csv, first);
  EXPECT_EQ(header, "kind,pass,seconds,share,calls,flops,bytes");
  EXPECT_EQ(first.rfind("Conv2d,forward,", 0), 0u) << first;
}

TEST(ProfilerCuda, TimesWorkOnTheStreamWithEvents) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  Profiler profiler;
  ctx.set_profiler(&profiler);
  Tensor a = Tensor::zeros({1 << 16}, DType::F32, Device::CUDA), b = a.clone();
  for (int i = 0; i < 4; ++i) {
    ProfileScope scope(ctx, "add", Pass::Forward, {0, 3 * tensor_bytes(a)});
    add(ctx, a, b, a);
  }
  profiler.collect(ctx);  // waits for the stream, reads the events back
  const std::vector<Profiler::Row> rows = profiler.rows(ctx);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].calls, 4);
  EXPECT_GT(rows[0].seconds, 0.0);
  EXPECT_EQ(rows[0].work.bytes, 4 * 3 * double(a.bytes()));
  ctx.set_profiler(nullptr);
}

}  // namespace
}  // namespace cuface
