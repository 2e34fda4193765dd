// `cuface demo --device cuda`, as a user runs it: the README's main job on the GPU path (on the CUDA
// emulator in CI) follows the CPU run step by step.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/backends.h"
#include "tests/face/cuface_program.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::cuface;
using testing::ScratchDir;
using testing::slurp;

// The loss column of a run's loss_debug.csv, one value a step.
std::vector<double> step_losses(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header: step,epoch,lr,loss,...
  std::vector<double> losses;
  while (std::getline(in, line)) {
    std::stringstream row(line);
    std::string cell;
    for (int column = 0; column < 4; ++column) std::getline(row, cell, ',');
    losses.push_back(std::stod(cell));
  }
  return losses;
}

TEST(DemoCuda, SyntheticRunFollowsTheCpuRun) {
  CUFACE_REQUIRE_GPU();
  ScratchDir dir;
  const std::string common = "demo --synthetic --steps 4 --batch 16 --input-size 32 --people 12 --workers 1 ";
  std::vector<double> cpu;
  for (const std::string precision : {"fp32", "bf16"}) {
    for (const std::string device : {"cpu", "cuda"}) {
      if (device == "cpu" && precision != "fp32") continue;
      const fs::path out = dir / (device + "-" + precision);
      const testing::Outcome run =
          cuface(dir, common + "--out " + out.string() + " --device " + device + " --precision " + precision);
      ASSERT_EQ(run.status, 0) << run.err;
      EXPECT_NE(run.out.find("demo: tiny ResNet trained"), std::string::npos) << run.out;
      const std::vector<double> losses = step_losses(out / "run" / "loss_debug.csv");
      ASSERT_EQ(losses.size(), 4u) << device << " " << precision;
      if (device == "cpu") {
        cpu = losses;
        continue;
      }
      // fp32: the same arithmetic in another order, every step. bf16 (activations and weights rounded
      // to 8 bits): the first step, from the same weights; the demo's learning rate (0.1) makes the
      // tiny net chaotic, so later bf16 steps only have to stay finite.
      const double tolerance = precision == "fp32" ? 1e-3 : 5e-2;
      for (size_t i = 0; i < cpu.size(); ++i) {
        EXPECT_TRUE(std::isfinite(losses[i])) << precision << " step " << i + 1;
        if (precision == "bf16" && i > 0) continue;
        EXPECT_LE(std::abs(losses[i] - cpu[i]), tolerance * std::abs(cpu[i]))
            << precision << " step " << i + 1 << ": " << losses[i] << " vs the CPU's " << cpu[i];
      }
    }
  }
}

// --precision auto (the default) picks bf16 on a GPU with bf16 tensor cores (the emulated H100 and
// A100 both have them) and says so; config.json keeps "auto", as the user wrote it.
TEST(DemoCuda, AutoPrecisionIsBf16OnAGpuWithBf16TensorCores) {
  CUFACE_REQUIRE_GPU();
  ScratchDir dir;
  const testing::Outcome run = cuface(dir, "demo --synthetic --steps 2 --batch 16 --input-size 32 --people 12 "
                                           "--workers 1 --device cuda --out " + (dir / "auto").string());
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("precision: bf16 (--precision auto on this GPU)"), std::string::npos) << run.out;
  EXPECT_NE(slurp(dir / "auto" / "run" / "config.json").find("\"precision\": \"auto\""), std::string::npos);
}

}  // namespace
}  // namespace cuface
