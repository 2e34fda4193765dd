// `cuface info`: what this build and machine offer (backend, GPUs, library versions).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <omp.h>

#include <cstdio>

#include "engine/allocator.h"
#include "face/cli/commands.h"

#if CUFACE_HAS_CUDA
#include <cudnn.h>

#include "engine/cuda_check.h"
#endif

namespace cuface::cli {

static void print_build_info() {
  std::printf("cuface %s\n", CUFACE_VERSION);
  std::printf("CPU backend: yes (%d OpenMP threads)\n", omp_get_max_threads());
#if CUFACE_HAS_CUDA
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::printf("CUDA backend: yes (runtime %d.%d, driver %s, cuDNN %zu, cuBLAS %d)\n", runtime / 1000,
              (runtime % 1000) / 10,
              driver ? (std::to_string(driver / 1000) + "." + std::to_string((driver % 1000) / 10)).c_str() : "none",
              cudnnGetVersion(), CUBLAS_VER_MAJOR * 10000 + CUBLAS_VER_MINOR * 100 + CUBLAS_VER_PATCH);
  const int gpus = cuda_device_count();
  if (gpus == 0) std::printf("GPU: no GPU\n");
  for (int i = 0; i < gpus; ++i) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    std::printf("GPU %d: %s, %.1f GiB, compute capability %d.%d, %d SMs\n", i, prop.name,
                double(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor, prop.multiProcessorCount);
  }
#else
  std::printf("CUDA backend: not built (configure with -DCUFACE_CUDA=ON on a machine with the CUDA toolkit)\n");
  std::printf("GPU: no GPU\n");
#endif
  std::printf("nlohmann_json %d.%d.%d, CLI11 %s\n", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
              NLOHMANN_JSON_VERSION_PATCH, CLI11_VERSION);
}

void add_info_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("info", "Show the build, the backends and GPUs found, and library versions");
  cmd->callback([] { print_build_info(); });
}

}  // namespace cuface::cli
