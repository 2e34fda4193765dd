#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/lr_schedule.h"
#include "engine/philox.h"

namespace cuface {
namespace {

// ---- a straightforward float64 reference of the statistic --------------------------------------

// P(slope < 0) of the least-squares line through (0, y_0), (1, y_1), ..., computed from scratch.
double reference_probability_decreasing(const std::vector<double>& y) {
  const double n = double(y.size());
  double mean_x = 0, mean_y = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    mean_x += double(i) / n;
    mean_y += y[i] / n;
  }
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    sxx += (double(i) - mean_x) * (double(i) - mean_x);
    sxy += (double(i) - mean_x) * (y[i] - mean_y);
  }
  const double slope = sxy / sxx, intercept = mean_y - slope * mean_x;
  double rss = 0;
  for (size_t i = 0; i < y.size(); ++i) rss += std::pow(y[i] - intercept - slope * double(i), 2);
  const double standard_error = std::sqrt(rss / (n - 2) * 12 / (n * n * n - n));
  if (standard_error == 0) return slope < 0 ? 1.0 : slope > 0 ? 0.0 : 0.5;
  return 0.5 * std::erfc(slope / standard_error / std::sqrt(2.0));  // Phi(-slope / se)
}

// The longest suffix whose (kept) values do not confidently decrease; `upper` drops larger values.
size_t reference_count(const std::vector<double>& values, double upper = INFINITY) {
  size_t count = 0;
  for (size_t k = 3; k <= values.size(); ++k) {
    std::vector<double> kept;
    for (size_t i = values.size() - k; i < values.size(); ++i)
      if (values[i] <= upper) kept.push_back(values[i]);
    if (kept.size() >= 3 && reference_probability_decreasing(kept) < 0.51) count = k;
  }
  return count;
}

size_t reference_robust_count(const std::vector<double>& values) {
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  return reference_count(values, sorted[size_t(std::round(double(values.size() - 1) * 0.9))]);
}

// ---- synthetic loss curves ------------------------------------------------------------------------

std::vector<double> curve(size_t n, double start, double slope, double noise, uint64_t seed) {
  Philox rng(seed);
  std::vector<double> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = start + slope * double(i) + noise * rng.next_normal();
  return y;
}

// A falling curve with three huge losses (bad batches) among the most recent values.
std::vector<double> falling_with_outliers(size_t n, uint64_t seed) {
  std::vector<double> y = curve(n, 10.0, -0.005, 0.5, seed);
  for (size_t back : {3, 20, 60}) y[n - back] += 1000;
  return y;
}

TEST(PlateauStatistic, MatchesTheFloat64Reference) {
  const std::vector<std::vector<double>> curves = {
      curve(500, 5.0, 0.0, 1.0, 1),     curve(500, 5.0, -0.003, 0.2, 2), curve(500, 5.0, 0.002, 0.3, 3),
      falling_with_outliers(500, 4),    curve(400, 2.0, -1e-4, 1e-3, 5), std::vector<double>(50, 3.0),
  };
  for (size_t c = 0; c < curves.size(); ++c) {
    const std::vector<double>& y = curves[c];
    EXPECT_NEAR(probability_loss_decreasing(y), reference_probability_decreasing(y), 1e-9) << "curve " << c;
    EXPECT_EQ(count_steps_without_decrease(y), reference_count(y)) << "curve " << c;
    EXPECT_EQ(count_steps_without_decrease_robust(y), reference_robust_count(y)) << "curve " << c;
  }
}

TEST(PlateauStatistic, FlatNoiseCountsNearlyEverything) {
  // On pure noise some long suffix almost always looks "not decreasing", so the count is typically
  // close to the length; averaged over seeds it must be.
  const size_t n = 1000;
  double mean_count = 0, mean_robust = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<double> y = curve(n, 3.0, 0.0, 1.0, 100 + seed);
    mean_count += double(count_steps_without_decrease(y)) / 20;
    mean_robust += double(count_steps_without_decrease_robust(y)) / 20;
  }
  EXPECT_GT(mean_count, 0.8 * n);
  EXPECT_GT(mean_robust, 0.8 * n);
  // A slowly rising loss: every long suffix is confidently not falling.
  EXPECT_EQ(count_steps_without_decrease(curve(n, 3.0, 1e-3, 0.1, 7)), n);
}

TEST(PlateauStatistic, FallingNoiseCountsLittle) {
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const std::vector<double> y = curve(2000, 10.0, -0.01, 1.0, 200 + seed);
    EXPECT_LT(count_steps_without_decrease(y), 200u) << seed;
    EXPECT_LT(count_steps_without_decrease_robust(y), 200u) << seed;
    EXPECT_GT(probability_loss_decreasing(y), 0.999) << seed;
  }
}

TEST(PlateauStatistic, OutliersFoolThePlainCountButNotTheRobustOne) {
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const std::vector<double> y = falling_with_outliers(2000, 300 + seed);
    EXPECT_GT(count_steps_without_decrease(y), 1800u) << seed;
    EXPECT_LT(count_steps_without_decrease_robust(y), 200u) << seed;
  }
}

TEST(PlateauStatistic, ShortInputsAndBadThresholds) {
  EXPECT_EQ(probability_loss_decreasing(std::vector<double>{1.0, 0.5}), 0.5);
  EXPECT_EQ(count_steps_without_decrease(std::vector<double>{}), 0u);
  EXPECT_EQ(count_steps_without_decrease_robust(std::vector<double>{}), 0u);
  EXPECT_EQ(count_steps_without_decrease(std::vector<double>{3.0, 2.0, 1.0}), 0u);  // a perfect fall
  EXPECT_EQ(count_steps_without_decrease(std::vector<double>{1.0, 2.0, 3.0}), 3u);
  EXPECT_THROW(count_steps_without_decrease(std::vector<double>{1.0}, 0.5), Error);
  EXPECT_THROW(count_steps_without_decrease_robust(std::vector<double>{1.0}, 0.6, 1.5), Error);
}

// ---- PlateauSchedule ------------------------------------------------------------------------------

TEST(PlateauSchedule, KeepsTheRateWhileTheLossFalls) {
  PlateauSchedule schedule(0.1, 200, 0.1, 1e-4, 10);
  for (double loss : curve(3000, 10.0, -0.003, 0.3, 11)) schedule.record(loss);
  EXPECT_EQ(schedule.lr(), 0.1);
  EXPECT_EQ(schedule.shrinks(), 0u);
  EXPECT_FALSE(schedule.should_stop());
  EXPECT_EQ(schedule.steps(), 3000);
}

TEST(PlateauSchedule, ShrinksOnPlateausAndStopsBelowTheFloor) {
  // Flat losses rising slightly, so every window of `patience` values is a plateau.
  PlateauSchedule schedule(0.1, 200, 0.1, 1e-4, 10);
  std::vector<int64_t> shrink_steps;
  const std::vector<double> losses = curve(5000, 1.0, 1e-4, 1e-3, 12);
  for (double loss : losses) {
    const double before = schedule.lr();
    schedule.record(loss);
    if (schedule.lr() != before) {
      EXPECT_EQ(schedule.lr(), before * 0.1);
      shrink_steps.push_back(schedule.steps());
    }
    if (schedule.should_stop()) break;
  }
  // History cleared on each shrink, so each shrink needs 200 new losses: steps 200, 400, 600, 800.
  EXPECT_EQ(shrink_steps, (std::vector<int64_t>{200, 400, 600, 800}));
  EXPECT_TRUE(schedule.should_stop());  // 0.1 * 0.1^4 = 1.0000000000000002e-05 < 1e-4
  EXPECT_LT(schedule.lr(), 1e-4);
}

TEST(PlateauSchedule, OriginalSettingsDropTheOldest4000Losses) {
  PlateauSchedule schedule = PlateauSchedule::original(1e-3);
  const nlohmann::json config = schedule.to_json();
  EXPECT_EQ(config["patience"], 15000);
  EXPECT_EQ(config["history"], 15000);
  EXPECT_EQ(config["check_every"], 750);
  EXPECT_EQ(config["min_lr"], 1e-6);
  const std::vector<double> losses = curve(15750, 1.0, 1e-5, 1e-3, 13);
  for (size_t i = 0; i < 15000; ++i) schedule.record(losses[i]);
  EXPECT_EQ(schedule.shrinks(), 1u);  // the first check with a full history
  EXPECT_DOUBLE_EQ(schedule.lr(), 1e-4);
  ASSERT_EQ(schedule.recent_losses().size(), 11000u);
  EXPECT_EQ(schedule.recent_losses().front(), losses[4000]);
  for (size_t i = 15000; i < 15750; ++i) schedule.record(losses[i]);
  EXPECT_EQ(schedule.shrinks(), 1u);  // 11750 losses cannot show a plateau of 15000
}

TEST(PlateauSchedule, ResumeFromJsonMakesIdenticalDecisions) {
  PlateauSchedule original(0.05, 300, 0.5, 1e-9, 7, 400, 0.51, 150);
  std::vector<double> losses = curve(1000, 5.0, -0.002, 0.5, 21);
  const std::vector<double> plateau = curve(3000, 3.0, 0.0, 0.5, 22);
  losses.insert(losses.end(), plateau.begin(), plateau.end());

  for (size_t i = 0; i < 1234; ++i) original.record(losses[i]);
  // Through text, as a checkpoint would store it, into a differently configured schedule.
  const std::string saved = original.to_json().dump();
  PlateauSchedule resumed(1.0);
  resumed.from_json(nlohmann::json::parse(saved));
  std::unique_ptr<LrSchedule> generic = lr_schedule_from_json(nlohmann::json::parse(saved));
  EXPECT_EQ(resumed.to_json(), original.to_json());

  size_t decisions = 0;
  for (size_t i = 1234; i < losses.size(); ++i) {
    original.record(losses[i]);
    resumed.record(losses[i]);
    generic->record(losses[i]);
    ASSERT_EQ(resumed.lr(), original.lr()) << "step " << i;
    ASSERT_EQ(generic->lr(), original.lr()) << "step " << i;
    decisions += resumed.lr() != 0.05;
  }
  EXPECT_GE(original.shrinks(), 2u);  // the comparison covered real shrink decisions
  EXPECT_GT(decisions, 0u);
  EXPECT_EQ(resumed.to_json(), original.to_json());
}

TEST(PlateauSchedule, RejectsBadInput) {
  PlateauSchedule schedule(0.1);
  EXPECT_THROW(schedule.record(NAN), Error);
  EXPECT_THROW(schedule.record(INFINITY), Error);
  EXPECT_THROW(PlateauSchedule(0.0), Error);
  EXPECT_THROW(PlateauSchedule(0.1, 2000, 1.0), Error);
  EXPECT_THROW(PlateauSchedule(0.1, 2000, 0.1, 1e-6, 100, 1000), Error);  // history < patience
  EXPECT_THROW(PlateauSchedule(0.1, 2000, 0.1, 1e-6, 100, 0, 0.4), Error);
  EXPECT_THROW(schedule.from_json(StepSchedule(0.1, {5}).to_json()), Error);
  EXPECT_THROW(schedule.from_json(nlohmann::json{{"type", "plateau"}}), Error);
  EXPECT_THROW(lr_schedule_from_json(nlohmann::json{{"type", "exponential"}}), Error);
  EXPECT_THROW(lr_schedule_from_json(nlohmann::json::array()), Error);
}

// ---- step, cosine, warm-up ------------------------------------------------------------------------

TEST(StepSchedule, MultipliesByGammaAtEachMilestone) {
  StepSchedule schedule(0.1, {10, 20}, 0.5);
  EXPECT_EQ(schedule.lr_at(0), 0.1);
  EXPECT_EQ(schedule.lr_at(9), 0.1);
  EXPECT_EQ(schedule.lr_at(10), 0.05);
  EXPECT_EQ(schedule.lr_at(19), 0.05);
  EXPECT_EQ(schedule.lr_at(20), 0.025);
  EXPECT_EQ(schedule.lr_at(1000000), 0.025);
  for (int i = 0; i < 15; ++i) schedule.record(1.0);
  EXPECT_EQ(schedule.lr(), 0.05);
  StepSchedule resumed(1.0, {});
  resumed.from_json(nlohmann::json::parse(schedule.to_json().dump()));
  for (int i = 0; i < 5; ++i) resumed.record(1.0);
  EXPECT_EQ(resumed.lr(), 0.025);
  EXPECT_THROW(StepSchedule(0.1, {20, 10}), Error);
  EXPECT_THROW(StepSchedule(0.1, {10, 10}), Error);
}

TEST(CosineSchedule, FollowsHalfACosineToTheFloor) {
  CosineSchedule schedule(0.1, 100, 0.001);
  EXPECT_DOUBLE_EQ(schedule.lr_at(0), 0.1);
  EXPECT_NEAR(schedule.lr_at(25), 0.001 + 0.099 * 0.8535533905932737, 1e-15);  // (1 + cos(pi/4)) / 2
  EXPECT_NEAR(schedule.lr_at(50), 0.0505, 1e-15);
  EXPECT_NEAR(schedule.lr_at(75), 0.001 + 0.099 * 0.1464466094067262, 1e-15);
  EXPECT_DOUBLE_EQ(schedule.lr_at(100), 0.001);
  EXPECT_DOUBLE_EQ(schedule.lr_at(250), 0.001);
  for (int i = 0; i < 99; ++i) schedule.record(1.0);
  EXPECT_FALSE(schedule.should_stop());
  std::unique_ptr<LrSchedule> resumed = lr_schedule_from_json(schedule.to_json());
  EXPECT_EQ(resumed->lr(), schedule.lr_at(99));
  resumed->record(1.0);
  EXPECT_TRUE(resumed->should_stop());
  EXPECT_THROW(CosineSchedule(0.1, 0), Error);
  EXPECT_THROW(CosineSchedule(0.1, 10, 0.2), Error);
}

// A time budget refines the run's length as it goes: the rate follows the newest length, which a
// checkpoint keeps, and other schedules ignore it.
TEST(CosineSchedule, FollowsARefinedLength) {
  CosineSchedule schedule(0.1, 1000, 0.001);
  for (int i = 0; i < 50; ++i) schedule.record(1.0);
  schedule.set_total_steps(200);
  EXPECT_NEAR(schedule.lr(), 0.001 + 0.099 * 0.8535533905932737, 1e-15);  // step 50 of 200
  EXPECT_EQ(lr_schedule_from_json(schedule.to_json())->lr(), schedule.lr());
  schedule.set_total_steps(50);
  EXPECT_TRUE(schedule.should_stop());
  EXPECT_THROW(schedule.set_total_steps(0), Error);
  StepSchedule steps(0.1, {10});
  steps.set_total_steps(5);
  EXPECT_EQ(steps.lr_at(10), 0.1 * 0.1);
}

// lr_after_next_record() promises the rate after the next record(), whatever loss it records, and a
// schedule that has not stopped; nullopt wherever that record may decide otherwise. Checked step by
// step against the schedule itself, fed two different losses from copies, through plateau shrinks
// (at check steps only), step milestones and the cosine's end.
void expect_lr_after_next_record_keeps_its_promise(LrSchedule& schedule, const std::vector<double>& losses,
                                                   int64_t expected_unknown) {
  int64_t unknown = 0;
  for (size_t i = 0; i < losses.size() && !schedule.should_stop(); ++i) {
    const std::optional<double> promised = schedule.lr_after_next_record();
    if (promised) {
      for (const double loss : {losses[i], 1e3 * losses[i]}) {
        std::unique_ptr<LrSchedule> copy = lr_schedule_from_json(schedule.to_json());
        copy->record(loss);
        EXPECT_EQ(copy->lr(), *promised) << "step " << i;
        EXPECT_FALSE(copy->should_stop()) << "step " << i;
      }
    } else {
      ++unknown;
    }
    schedule.record(losses[i]);
  }
  EXPECT_EQ(unknown, expected_unknown);
}

TEST(LrSchedule, TheRateAfterTheNextRecordIsKnownWhereTheLossCannotChangeIt) {
  const std::vector<double> losses = curve(1000, 1.0, 1e-4, 1e-3, 12);  // flat: a plateau every 200 steps
  PlateauSchedule plateau(0.1, 200, 0.1, 1e-4, 10);                     // checks every 10th record
  expect_lr_after_next_record_keeps_its_promise(plateau, losses, 80);  // 800 records to the 4th shrink
  StepSchedule step(0.1, {3, 7}, 0.5);
  expect_lr_after_next_record_keeps_its_promise(step, losses, 0);
  CosineSchedule cosine(0.1, 50, 0.001);
  expect_lr_after_next_record_keeps_its_promise(cosine, losses, 1);  // the 50th record ends it
}

TEST(Warmup, RampsLinearlyFromTheFirstStep) {
  EXPECT_EQ(warmup_factor(0, 4), 0.25);
  EXPECT_EQ(warmup_factor(1, 4), 0.5);
  EXPECT_EQ(warmup_factor(3, 4), 1.0);
  EXPECT_EQ(warmup_factor(100, 4), 1.0);
  EXPECT_EQ(warmup_factor(0, 0), 1.0);
}

}  // namespace
}  // namespace cuface
