// `cuface selfcheck` through its CLI11 registration, as `cuface` runs it.
#include <gtest/gtest.h>

#include "engine/allocator.h"
#include "engine/error.h"
#include "face/cli/commands.h"

namespace cuface {
namespace {

// Runs `cuface <arguments>` with the selfcheck command registered; returns its standard output.
std::string run_cuface(const std::string& arguments) {
  CLI::App app;
  cli::add_selfcheck_command(app);
  ::testing::internal::CaptureStdout();
  try {
    app.parse(arguments, false);
  } catch (...) {
    ::testing::internal::GetCapturedStdout();
    throw;
  }
  return ::testing::internal::GetCapturedStdout();
}

TEST(Selfcheck, PassesOnTheCpu) {
  const std::string out = run_cuface("selfcheck --size 200 --device cpu --runs 2");
  EXPECT_NE(out.find("CPU: "), std::string::npos) << out;
  EXPECT_NE(out.find("GPU: "), std::string::npos) << out;
  EXPECT_NE(out.find("run 2/2"), std::string::npos) << out;
  EXPECT_NE(out.find("selfcheck passed: cpu 200^3 GEMM"), std::string::npos) << out;
}

TEST(Selfcheck, PassesOnTheDefaultDeviceInEveryPrecision) {
  for (const char* precision : {"fp32", "tf32", "bf16"}) {
    const std::string out = run_cuface(std::string("selfcheck --size 300 --runs 1 --precision ") + precision);
    EXPECT_NE(out.find(cuda_device_count() > 0 ? "passed: cuda" : "passed: cpu"), std::string::npos) << out;
  }
}

TEST(Selfcheck, RejectsBadFlags) {
  EXPECT_THROW(run_cuface("selfcheck --size 0"), CLI::ValidationError);
  EXPECT_THROW(run_cuface("selfcheck --device tpu"), CLI::ValidationError);
  if (cuda_device_count() == 0) {
    EXPECT_THROW(run_cuface("selfcheck --device cuda"), Error);
  }
}

}  // namespace
}  // namespace cuface
