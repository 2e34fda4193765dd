// The trainer end to end on the CPU: exact resume, clear errors, NaN reporting, and learning real
// faces (LFW identities, UTKFace gender) well above chance.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/safetensors.h"
#include "face/pack/packer.h"
#include "face/train/demo.h"
#include "face/train/trainer.h"
#include "train_fixtures.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;
using testing::slurp;
using testing::synthetic_pack;
using testing::tiny_config;

// The loss column of loss_debug.csv, as written.
std::vector<std::string> losses(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::vector<std::string> out;
  while (std::getline(in, line)) {
    std::stringstream row(line);
    std::string cell;
    for (int column = 0; column < 4; ++column) std::getline(row, cell, ',');
    out.push_back(cell);
  }
  return out;
}

TEST(Train, ResumeContinuesBitForBit) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  train(tiny_config(pack, dir / "straight", 8), false);  // 8 steps in one go
  train(tiny_config(pack, dir / "split", 4), false);     // 4 steps, then resume to 8
  TrainConfig more = TrainConfig::from_json(nlohmann::json::parse(slurp(dir / "split" / "config.json")));
  more.steps = 8;
  train(more, true);
  // The weights, BN statistics and momentum buffers are identical to the last bit.
  EXPECT_EQ(slurp(dir / "straight" / "model-8.safetensors"), slurp(dir / "split" / "model-8.safetensors"));
  EXPECT_EQ(slurp(dir / "straight" / "state-8.safetensors"), slurp(dir / "split" / "state-8.safetensors"));
  EXPECT_EQ(losses(dir / "straight" / "loss_debug.csv"), losses(dir / "split" / "loss_debug.csv"));
  EXPECT_EQ(losses(dir / "split" / "loss_debug.csv").size(), 8u);
  // And the checkpoint really moved away from the untrained weights.
  EXPECT_NE(slurp(dir / "split" / "model-6.safetensors"), slurp(dir / "split" / "model-8.safetensors"));
}

TEST(Train, RefusesToOverwriteARunAndNamesBadSettings) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  train(tiny_config(pack, dir / "run", 2), false);
  try {
    train(tiny_config(pack, dir / "run", 2), false);
    FAIL() << "a second run into the same folder was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  TrainConfig bad = tiny_config(pack, dir / "bad", 2);
  bad.lr_schedule = "sometimes";
  EXPECT_THROW(train(bad, false), Error);
  bad = tiny_config((dir / "missing").string(), dir / "bad", 2);
  EXPECT_THROW(train(bad, false), Error);
}

TEST(Train, NonFiniteLossNamesTheStepAndWhereItStarted) {
  ScratchDir dir;
  TrainConfig config = tiny_config(synthetic_pack(dir), dir / "run", 20);
  config.lr = 1e30;  // the first update sends the weights to infinity
  config.checkpoint_every = 1;
  try {
    train(config, false);
    FAIL() << "training with lr 1e30 did not stop";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("at step"), std::string::npos) << message;
    EXPECT_NE(message.find("first non-finite: parameter"), std::string::npos) << message;
    EXPECT_NE(message.find("last good checkpoint"), std::string::npos) << message;
  }
  EXPECT_TRUE(fs::exists(dir / "run" / "model-1.safetensors"));  // the last good checkpoint stays
}

TEST(Train, CommandLineErrorsExitNonZeroWithOneMessage) {
  ScratchDir dir;
  const std::string base = std::string(CUFACE_BINARY) + " train ";
  auto run = [&](const std::string& args) {
    const int raw = std::system((base + args + " > " + (dir / "out").string() + " 2> " + (dir / "err").string()).c_str());
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  };
  EXPECT_NE(run("FR --out " + (dir / "r").string()), 0);
  EXPECT_NE(slurp(dir / "err").find("--train-sets"), std::string::npos) << slurp(dir / "err");
  EXPECT_EQ(run("FR --bogus-flag 3"), 2);
  EXPECT_NE(run("--resume " + (dir / "nothing").string()), 0);
  EXPECT_NE(slurp(dir / "err").find("config.json"), std::string::npos) << slurp(dir / "err");
}

// Learning real faces: people never trained on are told apart well above chance.
TEST(TrainEndToEnd, LfwHeldOutPeopleVerifyAboveChance) {
  if (!fs::exists(fs::path(CUFACE_SHARED_DATA) / "lfw" / "landmarks5.txt"))
    GTEST_SKIP() << "LFW not found under " << CUFACE_SHARED_DATA << " (the shared data set is absent)";
  ScratchDir dir;
  DemoOptions options;
  options.data = CUFACE_SHARED_DATA;
  options.out = (dir / "demo").string();
  options.max_identities = 70;
  options.steps = 250;
  options.batch = 32;
  options.input_size = 64;
  options.quiet = true;
  DemoResult r = run_demo(options);
  std::printf("LFW end to end: loss %.3f -> %.3f, held-out accuracy %.3f (untrained %.3f), 10-fold %.3f\n",
              r.first_loss, r.final_loss, r.accuracy, r.accuracy_before, r.kfold_mean);
  EXPECT_LT(r.final_loss, 0.5 * r.first_loss);
  EXPECT_GT(r.accuracy, 0.56);
}

}  // namespace
}  // namespace cuface

namespace cuface {
namespace {

// Writes a list file ("path identity gender age") of UTKFace images and returns their gender labels.
std::vector<int> utkface_list(const std::vector<fs::path>& files, const fs::path& list) {
  std::ofstream out(list);
  std::vector<int> genders;
  for (const fs::path& file : files) {
    // AGE_GENDER_RACE_DATE.jpg.chip.jpg
    std::stringstream name(file.filename().string());
    std::string age, gender;
    std::getline(name, age, '_');
    std::getline(name, gender, '_');
    out << file.string() << " 0 " << gender << " " << age << "\n";
    genders.push_back(std::stoi(gender));
  }
  return genders;
}

TEST(TrainEndToEnd, UtkfaceGenderBeatsTheMajorityClass) {
  const fs::path folder = fs::path(CUFACE_SHARED_DATA) / "utkface";
  if (!fs::exists(folder)) GTEST_SKIP() << "UTKFace not found under " << CUFACE_SHARED_DATA;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 1200u);
  ScratchDir dir;
  const std::vector<fs::path> train_files(files.begin(), files.begin() + 1000);
  const std::vector<fs::path> held_out_files(files.begin() + 1000, files.begin() + 1200);
  utkface_list(train_files, dir / "train.list");
  const std::vector<int> held_out = utkface_list(held_out_files, dir / "held_out.list");
  for (const char* part : {"train", "held_out"}) {
    PackOptions options;
    options.input = (dir / (std::string(part) + ".list")).string();
    options.format = "list";
    options.out = (dir / part).string();
    options.size = 64;
    options.encoding = Encoding::Raw;
    options.jobs = 2;
    pack_images(options);
  }
  TrainConfig config = tiny_config((dir / "train").string(), dir / "run", 250);
  config.task = "Gender";
  config.input_size = 64;
  config.batch = 32;
  config.lr_schedule = "cosine";
  config.min_lr = 1e-3;
  config.warmup = 25;
  config.valid_sets = {(dir / "held_out").string()};
  config.checkpoint_every = 0;
  train(config, false);

  // The last validation's overall accuracy, from valid.csv.
  std::ifstream in(dir / "run" / "valid.csv");
  std::string line;
  double accuracy = -1;
  while (std::getline(in, line))
    if (line.find(",Gender,accuracy,") != std::string::npos) accuracy = std::stod(line.substr(line.rfind(',') + 1));
  const double female = double(std::count(held_out.begin(), held_out.end(), 1)) / double(held_out.size());
  const double majority = std::max(female, 1.0 - female);
  std::printf("UTKFace gender: held-out accuracy %.3f, majority class %.3f\n", accuracy, majority);
  EXPECT_GT(accuracy, majority + 0.08);
}

}  // namespace
}  // namespace cuface
