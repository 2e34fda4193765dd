// Run one test body on every backend: derive a fixture from BackendTest, write TEST_P, and add
// CUFACE_ON_EVERY_BACKEND(Fixture). The CUDA case skips with "no CUDA device" where there is none.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>

#include "engine/allocator.h"
#include "engine/context.h"

namespace cuface {
// Readable parameter names in test output.
inline void PrintTo(Device device, std::ostream* out) { *out << device_name(device); }
inline void PrintTo(DType dtype, std::ostream* out) { *out << dtype_name(dtype); }
}  // namespace cuface

namespace cuface::testing {

class BackendTest : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::CUDA && cuda_device_count() == 0) {
      if (std::getenv("CUFACE_REQUIRE_CUDA")) GTEST_FAIL() << "no CUDA device, but CUFACE_REQUIRE_CUDA is set";
      GTEST_SKIP() << "no CUDA device";
    }
    context_ = std::make_unique<Context>(GetParam());
  }
  Device device() const { return GetParam(); }
  Context& ctx() { return *context_; }

 private:
  std::unique_ptr<Context> context_;
};

inline std::string backend_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param == Device::CUDA ? "cuda" : "cpu";
}

// For tests that compare a CUDA result with the CPU one: skips where no GPU exists, and fails instead
// where CUFACE_REQUIRE_CUDA is set (scripts/device_check.sh on a GPU machine: a GPU it cannot use
// must not read as a pass).
#define CUFACE_REQUIRE_GPU()                                                                          \
  if (::cuface::cuda_device_count() == 0) {                                                           \
    if (std::getenv("CUFACE_REQUIRE_CUDA")) GTEST_FAIL() << "no CUDA device, but CUFACE_REQUIRE_CUDA is set"; \
    GTEST_SKIP() << "no CUDA device";                                                                  \
  }

}  // namespace cuface::testing

#define CUFACE_ON_EVERY_BACKEND(Fixture)                                                        \
  INSTANTIATE_TEST_SUITE_P(Backends, Fixture, ::testing::Values(::cuface::Device::CPU, ::cuface::Device::CUDA), \
                           ::cuface::testing::backend_name)
