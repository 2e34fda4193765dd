// The run folder as a user meets it through `cuface train`: logs that hold every step once across
// SIGKILLs and resumes, one trainer per folder, no appending to a failed run, no rewriting of a
// finished one, everything checked before step 1, and the records saying what they hold (config.json's
// numbers, the validation and demo lines, the momentum's layout).
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <thread>

#include "engine/safetensors.h"
#include "face/train/trainer.h"
#include "kernels/conv.h"
#include "train_fixtures.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::Background;
using testing::command_line;
using testing::csv_rows;
using testing::cuface;
using testing::labelled_pack;
using testing::ScratchDir;
using testing::slurp;
using testing::synthetic_pack;
using testing::tiny_config;
using testing::tiny_train_args;
using testing::wait_until;

using Args = std::vector<std::string>;

Args operator+(Args a, const Args& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

int64_t latest_step(const fs::path& run) {
  const std::string text = slurp(run / "latest");
  return text.empty() ? -1 : std::stoll(text);
}

// loss_debug.csv without its last column (images per second: a timing).
std::vector<std::vector<std::string>> loss_rows(const fs::path& run) {
  std::vector<std::vector<std::string>> rows = csv_rows(run / "loss_debug.csv");
  for (auto& row : rows) row.pop_back();
  return rows;
}

// Every file of a run folder with its bytes, but the lock (a refused trainer may take over a killed one's).
std::map<std::string, std::string> snapshot(const fs::path& folder) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.path().filename() != "train.lock") files[entry.path().filename().string()] = slurp(entry.path());
  return files;
}

// 12 synthetic people packed as UTKFace names (AGE_GENDER_RACE_*): gender and age labels, no identities.
std::string utkface_pack(const ScratchDir& dir) {
  const auto people = write_synthetic_faces((dir / "utk_people").string(), 12, 6, 32, 7);
  fs::create_directories(dir / "utk");
  for (size_t p = 0; p < people.size(); ++p)
    for (size_t k = 0; k < people[p].second.size(); ++k)
      fs::copy_file(people[p].second[k], dir / "utk" / (std::to_string(5 + 9 * p) + "_" + std::to_string(p % 2) +
                                                        "_0_" + std::to_string(k) + ".png"));
  return testing::pack_folder((dir / "utk").string(), "utkface", (dir / "utk_pack").string());
}

// ---- 1. durable logs ---------------------------------------------------------------------------

// SIGKILL at seeded random moments after a checkpoint, resumed each time: loss_debug.csv and valid.csv
// end equal to those of a run never interrupted. They lost the rows of unflushed steps (a kill at a
// checkpoint left an empty log that the resume never refilled) and repeated the rows flushed after
// the last checkpoint.
TEST(RunFolder, LogsHoldEveryStepOnceAcrossKillsAndResumes) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const Args settings = {"--steps", "200", "--checkpoint-every", "7", "--log-every", "5",
                                             "--valid-sets", pack, "--valid-every", "20", "--valid-pairs", "40"};
  const fs::path straight = dir / "straight", killed = dir / "killed";
  ASSERT_EQ(Background(tiny_train_args(pack, straight) + settings, dir / "straight.log").wait(), 0)
      << slurp(dir / "straight.log");

  std::mt19937 rng(18);
  auto process = std::make_unique<Background>(tiny_train_args(pack, killed) + settings, dir / "killed.log");
  int kills = 0;
  for (int64_t resumed_at = 0; kills < 4; ++kills) {
    // A checkpoint newer than the one resumed from, then a kill anywhere in the next few steps (in a
    // step, a validation, the middle of writing a checkpoint).
    ASSERT_TRUE(wait_until([&] { return latest_step(killed) > resumed_at || !process->running(); }))
        << slurp(dir / "killed.log");
    if (!process->running()) break;
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(rng)));
    process->signal(SIGKILL);
    process->wait();
    resumed_at = latest_step(killed);
    process = std::make_unique<Background>(Args{"train", "--resume", killed.string()},
                                           dir / "killed.log");
  }
  ASSERT_EQ(process->wait(), 0) << slurp(dir / "killed.log");
  EXPECT_GE(kills, 3) << "the run ended before the test could kill it three times";

  const auto expected = loss_rows(straight), got = loss_rows(killed);
  ASSERT_EQ(expected.size(), 200u);
  for (size_t i = 0; i < expected.size(); ++i) ASSERT_EQ(expected[i][0], std::to_string(i + 1));
  EXPECT_EQ(got, expected);
  EXPECT_EQ(slurp(killed / "valid.csv"), slurp(straight / "valid.csv"));
  EXPECT_EQ(slurp(killed / "model-200.safetensors"), slurp(straight / "model-200.safetensors"));
}

// ---- 2. one writer ---------------------------------------------------------------------------

// A second trainer on a folder in use, new or resuming, is refused naming the first one's process;
// once that process is killed, its lock file is taken over. (Both trainers used to run, the first
// one's rows interleaved with the second's.)
TEST(RunFolder, ASecondTrainerIsRefusedAndAKilledOnesLockIsTakenOver) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const fs::path run = dir / "run";
  Background first(tiny_train_args(pack, run) + Args{"--steps", "100000", "--checkpoint-every", "5"},
                   dir / "first.log");
  ASSERT_TRUE(wait_until([&] { return latest_step(run) >= 5 || !first.running(); })) << slurp(dir / "first.log");
  ASSERT_TRUE(first.running()) << slurp(dir / "first.log");
  const std::string holder = "in use by process " + std::to_string(first.pid());

  testing::Outcome second = cuface(dir, command_line(tiny_train_args(pack, run) + Args{"--steps", "3"}));
  EXPECT_EQ(second.status, 1);
  EXPECT_NE(second.err.find(holder), std::string::npos) << second.err;
  second = cuface(dir, "train --resume " + run.string() + " --steps " + std::to_string(latest_step(run) + 50));
  EXPECT_EQ(second.status, 1);
  EXPECT_NE(second.err.find(holder), std::string::npos) << second.err;
  EXPECT_TRUE(first.running()) << slurp(dir / "first.log");

  first.signal(SIGKILL);
  first.wait();
  const int64_t stopped = latest_step(run);
  const testing::Outcome resumed =
      cuface(dir, "train --resume " + run.string() + " --steps " + std::to_string(stopped + 2));
  EXPECT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("left by process " + std::to_string(first.pid())), std::string::npos) << resumed.err;
  EXPECT_FALSE(fs::exists(run / "train.lock")) << "a trainer that ends releases the folder";
  const auto rows = csv_rows(run / "loss_debug.csv");
  ASSERT_EQ(int64_t(rows.size()), stopped + 2);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i][0], std::to_string(i + 1));
}

// ---- 3. a run that failed before its first checkpoint -------------------------------------------

// Its folder is refused (the --out help says so), never appended to with a second CSV header, and
// cannot be resumed.
TEST(RunFolder, AFolderOfARunKilledBeforeItsFirstCheckpointIsRefused) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const fs::path run = dir / "run";
  const Args args = tiny_train_args(pack, run) + Args{"--steps", "100000",
                                                                                              "--log-every", "1"};
  {
    Background failed(args, dir / "failed.log");
    ASSERT_TRUE(wait_until([&] { return csv_rows(run / "loss_debug.csv").size() >= 2 || !failed.running(); }));
    failed.signal(SIGKILL);
  }
  const auto before = snapshot(run);
  ASSERT_FALSE(before.count("latest"));

  testing::Outcome again = cuface(dir, command_line(tiny_train_args(pack, run) + Args{"--steps", "2"}));
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("--out '" + run.string() + "' holds a run that ended before its first checkpoint"),
            std::string::npos)
      << again.err;
  again = cuface(dir, "train --resume " + run.string() + " --steps 2");
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("has no checkpoint"), std::string::npos) << again.err;
  EXPECT_EQ(snapshot(run), before);
  EXPECT_NE(cuface(dir, "train --help").out.find("a folder holding another run's files is refused"), std::string::npos);
}

// ---- 4. a finished run ------------------------------------------------------------------------

// --resume with fewer steps (or none beyond the end) is an error that changes nothing; it used to
// rewrite config.json, validate again and append duplicate valid.csv rows.
TEST(RunFolder, ResumingAFinishedRunIsAnErrorThatChangesNothing) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const fs::path run = dir / "run";
  const Args settings = {"--steps", "4", "--checkpoint-every", "2", "--valid-sets", pack,
                                             "--valid-every", "2", "--valid-pairs", "40"};
  ASSERT_EQ(cuface(dir, command_line(tiny_train_args(pack, run) + settings)).status, 0);
  const auto finished = snapshot(run);
  for (const std::string steps : {" --steps 2", " --steps 4", ""}) {
    const testing::Outcome again = cuface(dir, "train --resume " + run.string() + steps);
    EXPECT_EQ(again.status, 1) << steps;
    EXPECT_NE(again.err.find("has finished: its checkpoint is at step 4"), std::string::npos) << again.err;
    EXPECT_EQ(snapshot(run), finished) << steps;
  }
  // Further steps extend it; the validation at step 4 stays once.
  ASSERT_EQ(cuface(dir, "train --resume " + run.string() + " --steps 6").status, 0);
  std::map<std::string, int> rows_per_step;
  for (const auto& row : csv_rows(run / "valid.csv"))
    if (row[2] == "gap") ++rows_per_step[row[0]];
  EXPECT_EQ(rows_per_step, (std::map<std::string, int>{{"2", 1}, {"4", 1}, {"6", 1}}));
}

// ---- 6. checked before step 1 ------------------------------------------------------------------

// What the run reads (the packs, identities for FR, gender and age labels for multi, --init) is
// checked before anything is trained or written: the validation sets failed at the first validation.
TEST(RunFolder, WhatTheRunNeedsIsCheckedBeforeStepOne) {
  ScratchDir dir;
  const std::string identities = synthetic_pack(dir), attributes = utkface_pack(dir), both = labelled_pack(dir);
  const std::string missing = (dir / "missing").string();
  struct Case {
    std::string task, train;
    Args more;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"FR", identities, {"--valid-sets", missing}, "--valid-sets: cannot open pack '" + missing},
      {"FR", identities, {"--valid-sets", attributes}, "--valid-sets: FR validation needs identity labels"},
      {"multi", both, {"--valid-sets", identities}, "--valid-sets: validating the gender head needs gender labels"},
      {"FR", attributes, {}, "--train-sets: FR training needs identity labels"},
      {"FR", identities, {"--init", missing + ".safetensors"}, "'" + missing + ".safetensors'"},
  };
  for (const Case& c : cases) {
    const fs::path run = dir / "run";
    Args args = tiny_train_args(c.train, run) + c.more + Args{"--steps", "4", "--valid-every", "2"};
    args[1] = c.task;
    const testing::Outcome outcome = cuface(dir, command_line(args));
    EXPECT_EQ(outcome.status, 1) << c.message;
    EXPECT_NE(outcome.err.find(c.message), std::string::npos) << outcome.err;
    EXPECT_FALSE(fs::exists(run)) << c.message << ": the run started";
    fs::remove_all(run);
  }
}

// ---- 15. augmentations -----------------------------------------------------------------------

// --no-flip, --scale-jitter, --shift-jitter and --colour-jitter reach the loader (each changes the
// first step's loss) and config.json; --help shows each default; out of range names the flag.
TEST(RunFolder, AugmentationsAreReachableFromTheCommandLine) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const std::vector<std::pair<std::string, std::vector<std::string>>> runs = {
      {"default", {}},
      {"no_flip", {"--no-flip"}},
      {"scale", {"--no-flip", "--scale-jitter", "0.2"}},
      {"shift", {"--no-flip", "--shift-jitter", "0.1"}},
      {"colour", {"--no-flip", "--colour-jitter", "0.3"}},
  };
  std::map<std::string, std::string> first_loss;
  for (const auto& [name, flags] : runs) {
    const testing::Outcome outcome =
        cuface(dir, command_line(tiny_train_args(pack, dir / name) + flags + Args{"--steps", "1"}));
    ASSERT_EQ(outcome.status, 0) << name << ": " << outcome.err;
    first_loss[name] = csv_rows(dir / name / "loss_debug.csv").at(0).at(3);
  }
  EXPECT_NE(first_loss["default"], first_loss["no_flip"]);
  for (const char* jittered : {"scale", "shift", "colour"})
    EXPECT_NE(first_loss[jittered], first_loss["no_flip"]) << jittered;
  const nlohmann::json config = nlohmann::json::parse(slurp(dir / "colour" / "config.json"));
  EXPECT_EQ(config["flip"], false);
  EXPECT_EQ(config["colour_jitter"].get<float>(), 0.3f);
  EXPECT_EQ(nlohmann::json::parse(slurp(dir / "scale" / "config.json"))["scale_jitter"].get<float>(), 0.2f);

  const std::string help = cuface(dir, "train --help").out;
  for (const char* flag : {"--flip", "--no-flip", "--scale-jitter", "--shift-jitter", "--colour-jitter"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  EXPECT_NE(help.find("(default on)"), std::string::npos);
  const testing::Outcome bad =
      cuface(dir, command_line(tiny_train_args(pack, dir / "bad") + Args{"--shift-jitter", "0.7"}));
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("--shift-jitter must be in [0, 0.5]"), std::string::npos) << bad.err;
}

// ---- 16. what the printed figures are -----------------------------------------------------------

// --help says a plateau cannot decay within --patience steps (a short run said nothing and trained at
// a constant rate); config.json keeps 0.1 as 0.1 (it printed 0.10000000149011612).
TEST(RunFolder, HelpNamesThePlateauDelayAndConfigKeepsNumbersAsGiven) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const std::string help = cuface(dir, "train --help").out;
  EXPECT_NE(help.find("a run no longer than that trains at a constant LR"), std::string::npos) << help;
  const testing::Outcome run =
      cuface(dir, command_line(tiny_train_args(pack, dir / "run") +
                               Args{"--steps", "1", "--sample-rate", "0.3", "--bn-momentum", "0.01"}));
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("note: the plateau schedule lowers the LR only after --patience 2000 steps"),
            std::string::npos)
      << run.out;
  const std::string config = slurp(dir / "run" / "config.json");
  for (const char* written : {"\"margin_m\": 0.1,", "\"sample_rate\": 0.3,", "\"bn_momentum\": 0.01,",
                              "\"embedding_dropout\": 0.4,", "\"margin_m2\": 0.3,"})
    EXPECT_NE(config.find(written), std::string::npos) << written << " not in\n" << config;
}

// The validation lines say what each figure is, "steps without progress" names the figure it follows,
// and gender has no top-2 (always 1 with two classes).
TEST(RunFolder, ValidationLinesSayWhatTheirFiguresAre) {
  ScratchDir dir;
  const std::string pack = labelled_pack(dir);
  Args args = tiny_train_args(pack, dir / "run") +
                                  Args{"--valid-sets", pack, "--steps", "2", "--valid-pairs", "40"};
  args[1] = "multi";
  const testing::Outcome run = cuface(dir, command_line(args));
  ASSERT_EQ(run.status, 0) << run.err;
  auto line_of = [&](const std::string& start) {
    const size_t at = run.out.find(start);
    return at == std::string::npos ? std::string() : run.out.substr(at, run.out.find('\n', at) - at);
  };
  const std::string fr = line_of("valid FR step 2"), gender = line_of("valid Gender step 2");
  const std::string age = line_of("valid Age step 2");
  for (const char* says : {"mean distance same", "gap", "best balanced accuracy", "chosen on these pairs",
                           "10-fold accuracy", "thresholds chosen on the other folds",
                           "0 steps without progress (best gap"})
    EXPECT_NE(fr.find(says), std::string::npos) << says << " not in: " << fr;
  EXPECT_NE(gender.find("average accuracy"), std::string::npos) << gender;
  EXPECT_EQ(gender.find("top-2"), std::string::npos) << gender;
  EXPECT_NE(age.find("top-2"), std::string::npos) << age;
  EXPECT_NE(age.find("top-3"), std::string::npos) << age;
  for (const auto& row : csv_rows(dir / "run" / "valid.csv"))
    EXPECT_FALSE(row[1] == "Gender" && row[2] == "top2_accuracy") << "valid.csv has gender top-2";
}

TEST(RunFolder, TheDemoLineSaysWhatItsFiguresAre) {
  ScratchDir dir;
  const testing::Outcome demo =
      cuface(dir, "demo --synthetic --people 20 --steps 2 --input-size 32 --batch 8 --out " + (dir / "demo").string());
  ASSERT_EQ(demo.status, 0) << demo.err;
  for (const char* says : {"mean loss of the first 10 steps", "best balanced accuracy", "chosen on these pairs",
                           "10-fold accuracy", "thresholds chosen on the other folds", "pairs"})
    EXPECT_NE(demo.out.find(says), std::string::npos) << says << " not in:\n" << demo.out;
}

// ---- 17. the momentum's layout -----------------------------------------------------------------

// state-STEP.safetensors holds each momentum buffer in its weight's shape and layout (convolutions
// OIHW, as model-STEP.safetensors): at a constant LR w2 = w1 - lr v2, so v2 = (w1 - w2) / lr element
// by element. They were OHWI beside OIHW weights.
TEST(RunFolder, MomentumIsLaidOutAsTheWeights) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const fs::path run = dir / "run";
  ASSERT_EQ(cuface(dir, command_line(tiny_train_args(pack, run) +
                                     Args{"--steps", "2", "--checkpoint-every", "1", "--lr", "0.1"}))
                .status,
            0);
  const auto w1 = load_safetensors((run / "model-1.safetensors").string()).tensors;
  const auto w2 = load_safetensors((run / "model-2.safetensors").string()).tensors;
  const auto momentum = load_safetensors((run / "state-2.safetensors").string()).tensors;
  int convolutions = 0;
  for (const auto& [name, v] : momentum) {
    const std::string weight = name.substr(std::string("momentum.").size());
    ASSERT_TRUE(w1.count(weight)) << name;
    const Tensor &a = w1.at(weight), &b = w2.at(weight);
    ASSERT_EQ(v.shape(), a.shape()) << name;
    convolutions += v.rank() == 4 && v.size(1) != v.size(3);
    double worst = 0, largest = 0, magnitude = 0;
    for (int64_t i = 0; i < v.numel(); ++i) {
      const double expected = (double(a.data<float>()[i]) - b.data<float>()[i]) / 0.1;
      worst = std::max(worst, std::fabs(v.data<float>()[i] - expected));
      largest = std::max(largest, std::fabs(expected));
      magnitude = std::max(magnitude, double(std::fabs(a.data<float>()[i])));
    }
    // w1 - w2 is exact to a float rounding of w each (a bias before BatchNorm moves by rounding only).
    EXPECT_LE(worst, 1e-4 * largest + 2 * 1.2e-7 * magnitude / 0.1) << name;
  }
  EXPECT_GT(convolutions, 0) << "no convolution whose layouts differ";
}

// A state file written before (convolutions' momentum OHWI, no "momentum_layout" entry) still resumes
// exactly.
TEST(RunFolder, AStateFileFromBeforeResumesExactly) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  train(tiny_config(pack, dir / "straight", 4), false);
  TrainConfig config = tiny_config(pack, dir / "old", 2);
  train(config, false);
  const std::string state = (dir / "old" / "state-2.safetensors").string();
  std::vector<std::pair<std::string, Tensor>> as_layers;
  for (const auto& [name, v] : load_safetensors(state).tensors)
    as_layers.emplace_back(name, v.rank() == 4 ? oihw_to_ohwi(v) : v);
  save_safetensors(state, as_layers);
  config.steps = 4;
  train(config, true);
  EXPECT_EQ(slurp(dir / "old" / "model-4.safetensors"), slurp(dir / "straight" / "model-4.safetensors"));
  EXPECT_EQ(slurp(dir / "old" / "state-4.safetensors"), slurp(dir / "straight" / "state-4.safetensors"));
}

}  // namespace
}  // namespace cuface
