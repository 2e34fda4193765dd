// `cuface train --recipe` and `--time-budget` as a user meets them: what a recipe sets and what
// overrides it (a --config file, then flags), config.json recording the resolved values, a run that
// ends when its wall-clock budget is spent with its cosine schedule decayed over that time, and a
// budget run resumed and extended.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "engine/error.h"
#include "face/cli/progress.h"
#include "face/train/recipe.h"
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

using Args = std::vector<std::string>;

// The tiny network on the synthetic pack, without the margin flags tiny_train_args gives: those are
// what a recipe sets.
Args recipe_args(const std::string& pack, const fs::path& out) {
  return {"train", "FR",    "--train-sets", pack,       "--out",     out.string(), "--arch", "tiny",
          "--input-size", "32", "--batch",   "8",        "--device", "cpu",        "--workers", "1"};
}

Args operator+(Args a, const Args& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

nlohmann::json config_of(const fs::path& run) { return nlohmann::json::parse(slurp(run / "config.json")); }

TEST(Recipe, SmallSetsItsValuesAndAConfigFileThenFlagsOverrideThem) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const testing::Outcome small =
      cuface(dir, command_line(recipe_args(pack, dir / "small") + Args{"--recipe", "small", "--steps", "2"}));
  ASSERT_EQ(small.status, 0) << small.err;
  nlohmann::json config = config_of(dir / "small");
  EXPECT_EQ(config["recipe"], "small");
  const nlohmann::json small_settings = recipe_settings("small");
  for (const auto& [key, value] : small_settings.items())
    if (key != "arch" && key != "input_size" && key != "batch") {
      EXPECT_EQ(config[key], value) << key;
    }
  EXPECT_EQ(config["arch"], "tiny");  // the flag beats the recipe
  EXPECT_EQ(config["input_size"], 32);
  EXPECT_EQ(config["batch"], 8);

  // A --config file naming the recipe applies it, its own keys win over the recipe's, flags over both.
  std::ofstream(dir / "settings.json") << R"({"recipe": "small", "margin_s": 20, "lr": 0.05})";
  const testing::Outcome filed = cuface(
      dir, command_line(recipe_args(pack, dir / "filed") +
                        Args{"--config", (dir / "settings.json").string(), "--lr", "0.02", "--steps", "2"}));
  ASSERT_EQ(filed.status, 0) << filed.err;
  config = config_of(dir / "filed");
  EXPECT_EQ(config["recipe"], "small");
  EXPECT_EQ(config["margin"], small_settings["margin"]);
  EXPECT_EQ(config["margin_s"], 20.0);
  EXPECT_EQ(config["lr"], 0.02);

  // Without a recipe (or with --recipe large) the original project's defaults stay.
  const testing::Outcome large =
      cuface(dir, command_line(recipe_args(pack, dir / "large") + Args{"--recipe", "large", "--steps", "2"}));
  ASSERT_EQ(large.status, 0) << large.err;
  config = config_of(dir / "large");
  EXPECT_EQ(config["recipe"], "large");
  EXPECT_EQ(config["margin"], "arcface");
  EXPECT_EQ(config["margin_s"], 64.0);
  EXPECT_EQ(config["lr_schedule"], "plateau");

  const testing::Outcome unknown = cuface(dir, command_line(recipe_args(pack, dir / "bad") + Args{"--recipe", "tiny"}));
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.err.find("--recipe"), std::string::npos) << unknown.err;
  std::ofstream(dir / "bad.json") << R"({"recipe": "medium"})";
  const testing::Outcome unknown_in_file = cuface(
      dir, command_line(recipe_args(pack, dir / "bad") + Args{"--config", (dir / "bad.json").string()}));
  EXPECT_EQ(unknown_in_file.status, 1);
  EXPECT_NE(unknown_in_file.err.find("--recipe must be small or large, not 'medium'"), std::string::npos)
      << unknown_in_file.err;
  EXPECT_FALSE(fs::exists(dir / "bad"));

  const std::string help = cuface(dir, "train --help").out;
  for (const char* said : {"--recipe", "--time-budget", "small = for thousands of images", "docs/recipes.md"})
    EXPECT_NE(help.find(said), std::string::npos) << said;
}

TEST(Recipe, DurationsReadAsAUserWritesThem) {
  EXPECT_EQ(cli::parse_duration("30m", "--time-budget"), 1800);
  EXPECT_EQ(cli::parse_duration("1h30m", "--time-budget"), 5400);
  EXPECT_EQ(cli::parse_duration("1.5h", "--time-budget"), 5400);
  EXPECT_EQ(cli::parse_duration("90s", "--time-budget"), 90);
  EXPECT_EQ(cli::parse_duration("45", "--time-budget"), 45);
  EXPECT_EQ(cli::parse_duration("2m30s", "--time-budget"), 150);
  for (const char* bad : {"", "m", "-5m", "5x", "1e3s", "inf", "30 m", "h1", "1..5m"}) {
    try {
      cli::parse_duration(bad, "--time-budget");
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--time-budget '" + std::string(bad) + "'"), std::string::npos) << e.what();
    }
  }
}

// The run ends when the budget is spent, not before and not long after; the LR warms up, then
// falls along the cosine to the floor at the budget's end, step by step (never rising), and the
// checkpoint records the time trained, which a resume with a longer budget continues from.
TEST(Recipe, ATimeBudgetEndsTheRunWithTheScheduleDecayedOverIt) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const Args budget_run = recipe_args(pack, dir / "run") +
                          Args{"--recipe", "small", "--warmup", "5", "--time-budget", "4s", "--log-every", "1000"};
  const auto start = std::chrono::steady_clock::now();
  const testing::Outcome run = cuface(dir, command_line(budget_run));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find("time budget spent"), std::string::npos) << run.out;
  EXPECT_GE(seconds, 4.0);
  EXPECT_LT(seconds, 30.0);

  const auto rows = csv_rows(dir / "run" / "loss_debug.csv");
  ASSERT_GT(rows.size(), 20u) << "a tiny step takes milliseconds";
  const double base = recipe_settings("small")["lr"], floor = recipe_settings("small")["min_lr"];
  EXPECT_NEAR(std::stod(rows[0][2]), base / 5, 1e-9);  // warm-up's first step
  // Laid over the clock, the rate never rises again (up to the rounding of the schedule's length to
  // whole steps), however the pace of the steps changes.
  for (size_t i = 5; i + 1 < rows.size(); ++i)
    EXPECT_LE(std::stod(rows[i + 1][2]), std::stod(rows[i][2]) * (1 + 1e-3)) << "step " << i + 1;
  // The last steps train near the floor: the decay was laid over the whole budget.
  EXPECT_LT(std::stod(rows.back()[2]), floor + 0.05 * (base - floor));
  EXPECT_GT(std::stod(rows[rows.size() / 4][2]), floor + 0.5 * (base - floor));

  const int64_t steps = int64_t(rows.size());
  const nlohmann::json state = nlohmann::json::parse(slurp(dir / "run" / ("state-" + std::to_string(steps) + ".json")));
  EXPECT_GE(state["trained_seconds"].get<double>(), 4.0);
  EXPECT_LT(state["trained_seconds"].get<double>(), 8.0);
  EXPECT_DOUBLE_EQ(config_of(dir / "run")["time_budget"].get<double>(), 4.0);

  const testing::Outcome finished = cuface(dir, "train --resume " + (dir / "run").string());
  EXPECT_EQ(finished.status, 1);
  EXPECT_NE(finished.err.find("give a longer --time-budget"), std::string::npos) << finished.err;
  const testing::Outcome extended = cuface(dir, "train --resume " + (dir / "run").string() + " --time-budget 6s");
  ASSERT_EQ(extended.status, 0) << extended.err;
  EXPECT_GT(csv_rows(dir / "run" / "loss_debug.csv").size(), rows.size());

  const testing::Outcome both =
      cuface(dir, command_line(recipe_args(pack, dir / "both") + Args{"--time-budget", "1m", "--steps", "5"}));
  EXPECT_EQ(both.status, 1);
  EXPECT_NE(both.err.find("--time-budget and --steps both set the run's length"), std::string::npos) << both.err;
  const testing::Outcome malformed =
      cuface(dir, command_line(recipe_args(pack, dir / "malformed") + Args{"--time-budget", "half an hour"}));
  EXPECT_NE(malformed.status, 0);
  EXPECT_FALSE(fs::exists(dir / "malformed"));
}

}  // namespace
}  // namespace cuface
