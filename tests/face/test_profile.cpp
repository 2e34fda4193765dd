// `cuface train --profile` and `cuface embed --profile` as a user runs them: a per-layer-kind table
// printed and written beside the results, whose calls and operation counts follow from the network.
#include <gtest/gtest.h>

#include <map>

#include "train_fixtures.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::command_line;
using testing::csv_rows;
using testing::cuface;
using testing::ScratchDir;
using testing::slurp;
using testing::synthetic_pack;

// profile.csv rows keyed "kind/pass".
std::map<std::string, std::vector<std::string>> profile_rows(const fs::path& csv) {
  std::map<std::string, std::vector<std::string>> rows;
  for (const auto& row : csv_rows(csv)) rows[row.at(0) + "/" + row.at(1)] = row;
  return rows;
}

TEST(Profile, TrainAndEmbedTimeEachKindOfLayer) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  std::vector<std::string> args = testing::tiny_train_args(pack, dir / "run");
  args.insert(args.end(), {"--steps", "4", "--profile"});
  const testing::Outcome run = cuface(dir, command_line(args));
  ASSERT_EQ(run.status, 0) << run.err;
  for (const char* said : {"profile: 3 steps (this process's first excluded)", "Conv2d", "BatchNorm", "MarginHead",
                           "SGD update + zero_grad", "input (wait + normalise)", "(outside the scopes)", "GFLOP/s"})
    EXPECT_NE(run.out.find(said), std::string::npos) << said << "\n" << run.out;
  EXPECT_EQ(slurp(dir / "run" / "profile.txt").rfind("profile: 3 steps", 0), 0u);

  const auto rows = profile_rows(dir / "run" / "profile.csv");
  ASSERT_TRUE(rows.count("Linear/forward")) << slurp(dir / "run" / "profile.csv");
  // The embedding FC of the tiny net: 256 pooled features (bottleneck width 8 x 8 x 4) to 512, batch 8,
  // once a step forward, and backward computes dx and dW: twice the operations.
  const double gemm = 2.0 * 8 * 256 * 512;
  EXPECT_EQ(rows.at("Linear/forward").at(4), "3");
  EXPECT_DOUBLE_EQ(std::stod(rows.at("Linear/forward").at(5)), 3 * gemm);
  EXPECT_DOUBLE_EQ(std::stod(rows.at("Linear/backward").at(5)), 3 * 2 * gemm);
  EXPECT_EQ(rows.at("MarginHead/forward").at(4), "3");
  EXPECT_EQ(rows.at("SGD update + zero_grad/step").at(4), "3");
  // Every convolution of the tiny ResNet (stem, 3 per bottleneck block, 4 blocks, 4 projections) once
  // per step in each direction.
  EXPECT_EQ(rows.at("Conv2d/forward").at(4), std::to_string(3 * (1 + 4 * 3 + 4)));
  EXPECT_EQ(rows.at("Conv2d/backward").at(4), rows.at("Conv2d/forward").at(4));
  // BatchNorm's bytes are its passes over its input (layers/batch_norm.cpp): per step 3 forward, and
  // backward 7 with the ReLU fused, 5 without. The tiny net at 32 px, batch 8, in floats: with ReLU
  // the stem's 16x16x8 and each block's bn1 and bn2 (8x8x8 twice; 8x8x16, 4x4x16; 4x4x32, 2x2x32;
  // 2x2x64, 1x1x64); without, the projections' (8x8x32, 4x4x64, 2x2x128, 1x1x256) and the embedding's 512.
  const double relu_floats = 8 * (16 * 16 * 8 + 2 * 8 * 8 * 8 + 8 * 8 * 16 + 4 * 4 * 16 + 4 * 4 * 32 + 2 * 2 * 32 +
                                   2 * 2 * 64 + 64);
  const double plain_floats = 8 * (8 * 8 * 32 + 4 * 4 * 64 + 2 * 2 * 128 + 256 + 512);
  EXPECT_DOUBLE_EQ(std::stod(rows.at("BatchNorm/forward").at(6)), 3 * 3 * 4 * (relu_floats + plain_floats));
  EXPECT_DOUBLE_EQ(std::stod(rows.at("BatchNorm/backward").at(6)), 3 * 4 * (7 * relu_floats + 5 * plain_floats));
  double share = 0;
  for (const auto& [key, row] : rows) share += std::stod(row.at(3));
  EXPECT_LE(share, 1.0001);

  const testing::Outcome embed = cuface(dir, "embed --model " + (dir / "run").string() + " --images " +
                                                 (dir / "faces").string() + " --out " + (dir / "rows.npy").string() +
                                                 " --profile");
  ASSERT_EQ(embed.status, 0) << embed.err;
  EXPECT_NE(embed.out.find("profile: embedding 72 images"), std::string::npos) << embed.out;
  const auto embed_rows = profile_rows(dir / "rows.profile.csv");
  EXPECT_TRUE(embed_rows.count("Conv2d/forward"));
  for (const auto& [key, row] : embed_rows) EXPECT_EQ(key.find("/backward"), std::string::npos) << key;
  const testing::Outcome again = cuface(dir, "embed --model " + (dir / "run").string() + " --images " +
                                                 (dir / "faces").string() + " --out " + (dir / "other.npy").string() +
                                                 " --profile");
  ASSERT_EQ(again.status, 0) << again.err;
}

}  // namespace
}  // namespace cuface
