// cuBLAS is loaded with the first CUDA Context, not at program start (engine/cublas_library.h).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#if CUFACE_HAS_CUDA
#include "engine/cublas_library.h"
#endif

namespace {

// Whether a shared library whose path contains `name` is mapped into this process.
bool library_mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find(name) != std::string::npos) return true;
  return false;
}

// Read during static initialisation, before any test can have made a Context.
const bool cublas_mapped_at_start = library_mapped("libcublas");

TEST(CublasLibraryCuda, LoadsOnFirstUseNotAtStart) {
#if !CUFACE_HAS_CUDA
  GTEST_SKIP() << "this build has no CUDA backend";
#elif CUFACE_CUDA_EMULATED
  // The emulator's cuBLAS is linked in: the table points at it.
  const cuface::CublasLibrary& cublas = cuface::cublas_library();
  EXPECT_EQ(cublas.create, &cublasCreate);
  EXPECT_EQ(cublas.gemm_ex, static_cast<cuface::CublasLibrary::GemmEx>(&cublasGemmEx));
#else
  EXPECT_FALSE(cublas_mapped_at_start) << "libcublas was loaded before main";
  const cuface::CublasLibrary& cublas = cuface::cublas_library();
  EXPECT_TRUE(library_mapped("libcublas")) << "cublas_library() did not load libcublas";
  EXPECT_NE(cublas.create, nullptr);
  EXPECT_NE(cublas.destroy, nullptr);
  EXPECT_NE(cublas.set_stream, nullptr);
  EXPECT_NE(cublas.gemm_ex, nullptr);
  EXPECT_EQ(&cuface::cublas_library(), &cublas) << "loaded twice";
#endif
}

}  // namespace
