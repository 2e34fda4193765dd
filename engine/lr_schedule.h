// Learning-rate schedules. The trainer asks lr() before each step, calls record(loss) after it, and
// stops when should_stop(); to_json()/from_json() carry the configuration and the whole state through
// a checkpoint, so a resumed run makes exactly the decisions the uninterrupted one would have made.
//
//   PlateauSchedule  dlib's / the original project's rule: shrink the rate when the loss has
//                    statistically stopped falling (count_steps_without_decrease below), stop when
//                    the rate falls under a floor.
//   StepSchedule     multiply by gamma at each milestone step (PyTorch MultiStepLR).
//   CosineSchedule   half a cosine from the base rate to a floor over a fixed number of steps.
//   warmup_factor    a linear ramp the trainer multiplies any schedule's rate by.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <vector>

namespace cuface {

// ---- the plateau statistic (after dlib/statistics/running_gradient.h) ---------------------------
//
// Fit a least-squares line to values y_0 .. y_{n-1} against x = 0 .. n-1. With the residual variance
// sigma^2 = RSS / (n - 2), the slope's standard error is sqrt(12 sigma^2 / (n^3 - n)), and treating
// the slope as normal, P(slope < 0) = Phi(-slope / standard_error). Fewer than 3 values: 0.5.
double probability_loss_decreasing(std::span<const double> values);

// The length of the longest suffix (most recent values) over which the loss is NOT confidently
// falling: the largest k >= 3 with probability_loss_decreasing(last k values) < probability_threshold,
// or 0 if there is none. It grows with the length of a plateau and stays small while the loss falls.
size_t count_steps_without_decrease(std::span<const double> values, double probability_threshold = 0.51);

// The same after discarding every value above the (1 - quantile_discard) quantile (dlib's
// find_upper_quantile: the element of rank round((n - 1) * (1 - quantile_discard))), so a few huge
// losses from bad batches cannot fake a plateau. The kept values are renumbered 0, 1, 2, ... as if
// the discarded ones had never been there (exactly as dlib does), but k counts all values.
size_t count_steps_without_decrease_robust(std::span<const double> values, double probability_threshold = 0.51,
                                           double quantile_discard = 0.10);

// ---- schedules ------------------------------------------------------------------------------------

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr() const = 0;                // the rate for the next step
  virtual void record(double loss) = 0;         // after each step, with that step's loss
  virtual bool should_stop() const = 0;         // the schedule has run its course
  // lr() as it will be after the next record(), when that does not depend on the loss recorded and
  // that record leaves should_stop() false; nullopt otherwise. A trainer that reads each step's loss
  // one step late (face/train/step_graph.h) queues the next step with it, and waits for the loss
  // first only where this is nullopt, so its decisions are those of a trainer that waits every step.
  virtual std::optional<double> lr_after_next_record() const = 0;
  virtual nlohmann::json to_json() const = 0;   // configuration and state, {"type": ..., ...}
  virtual void from_json(const nlohmann::json& state) = 0;  // replaces configuration and state
  // The run's length changed: a time budget's step estimate (the trainer's --time-budget) is
  // refined every step. Only schedules laid over the run's length (cosine) care.
  virtual void set_total_steps(int64_t) {}
};

// Rebuilds whichever schedule to_json() described; throws cuface::Error on anything malformed.
std::unique_ptr<LrSchedule> lr_schedule_from_json(const nlohmann::json& state);

// Every `check_every` recorded steps, look at the last `history` losses (0: as many as `patience`);
// if both the plain and the robust count reach `patience`, multiply the rate by `shrink` and keep
// only the most recent `keep_after_shrink` losses (0: none), so the next decision is made on losses
// seen at the new rate. Training should stop once lr() < min_lr (plain comparison, as in dlib and
// the original: 1e-3 shrunk by 0.1 three times is 1.0000000000000002e-06, not below 1e-6).
// Non-finite losses are refused with an error: they would poison the statistic.
class PlateauSchedule : public LrSchedule {
 public:
  PlateauSchedule(double initial_lr, size_t patience = 2000, double shrink = 0.1, double min_lr = 1e-6,
                  size_t check_every = 100, size_t history = 0, double threshold = 0.51,
                  size_t keep_after_shrink = 0);

  // The original project's settings (ORIGINAL.md): patience and history 15000, a check every 750
  // steps, shrink 0.1, min_lr 1e-6, threshold 0.51, the oldest 4000 losses dropped on a shrink.
  static PlateauSchedule original(double initial_lr = 1e-3);

  double lr() const override { return lr_; }
  void record(double loss) override;
  bool should_stop() const override { return lr_ < min_lr_; }
  std::optional<double> lr_after_next_record() const override;  // nullopt when that record checks
  nlohmann::json to_json() const override;
  void from_json(const nlohmann::json& state) override;

  int64_t steps() const { return steps_; }
  size_t shrinks() const { return shrinks_; }
  // Plain count at the most recent check (for the log line); 0 before the first check.
  size_t steps_without_decrease() const { return last_count_; }
  // The losses the next check will look at, oldest first.
  std::span<const double> recent_losses() const;

 private:
  void check_plateau();

  // configuration
  double initial_lr_;
  size_t patience_;
  double shrink_;
  double min_lr_;
  size_t check_every_;
  size_t history_;
  double threshold_;
  size_t keep_after_shrink_;
  // state
  double lr_;
  int64_t steps_ = 0;
  size_t shrinks_ = 0;
  size_t last_count_ = 0;
  std::vector<double> losses_;  // the window is the last history_ entries; older ones trimmed lazily
};

// lr = base_lr * gamma^(number of milestones <= step), applied as repeated multiplication like
// PyTorch's MultiStepLR. Steps count from 0; milestones must be increasing.
class StepSchedule : public LrSchedule {
 public:
  StepSchedule(double base_lr, std::vector<int64_t> milestones, double gamma = 0.1);
  double lr_at(int64_t step) const;

  double lr() const override { return lr_at(steps_); }
  void record(double) override { ++steps_; }
  bool should_stop() const override { return false; }
  std::optional<double> lr_after_next_record() const override { return lr_at(steps_ + 1); }
  nlohmann::json to_json() const override;
  void from_json(const nlohmann::json& state) override;

 private:
  double base_lr_;
  std::vector<int64_t> milestones_;
  double gamma_;
  int64_t steps_ = 0;
};

// lr = floor_lr + (base_lr - floor_lr) * (1 + cos(pi * step / total_steps)) / 2, held at floor_lr
// from total_steps on, when should_stop() becomes true.
class CosineSchedule : public LrSchedule {
 public:
  CosineSchedule(double base_lr, int64_t total_steps, double floor_lr = 0.0);
  double lr_at(int64_t step) const;

  double lr() const override { return lr_at(steps_); }
  void record(double) override { ++steps_; }
  bool should_stop() const override { return steps_ >= total_steps_; }
  std::optional<double> lr_after_next_record() const override;  // nullopt when that record ends it
  nlohmann::json to_json() const override;
  void from_json(const nlohmann::json& state) override;
  void set_total_steps(int64_t total_steps) override;

 private:
  double base_lr_;
  int64_t total_steps_;
  double floor_lr_;
  int64_t steps_ = 0;
};

// Linear warm-up: (step + 1) / warmup_steps for step < warmup_steps, then 1 (steps count from 0, so
// the first step already moves; warmup_steps <= 0 means no warm-up).
double warmup_factor(int64_t step, int64_t warmup_steps);

}  // namespace cuface
