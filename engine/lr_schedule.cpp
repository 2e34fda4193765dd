#include "engine/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>
#include <string>

#include "engine/error.h"

namespace cuface {

using nlohmann::json;

namespace {

// Least-squares line through (0, y_0), (1, y_1), ... fed one value at a time. Means and
// co-moments are updated in Welford's way, so thousands of nearly equal losses lose no precision.
class RunningLine {
 public:
  void add(double y) {
    const double x = n_;
    n_ += 1;
    const double dx = x - mean_x_;
    mean_x_ += dx / n_;
    const double dy = y - mean_y_;
    mean_y_ += dy / n_;
    sxx_ += dx * (x - mean_x_);
    sxy_ += dx * (y - mean_y_);
    syy_ += dy * (y - mean_y_);
  }
  double count() const { return n_; }

  // P(slope > 0) with the slope normal around its estimate, standard error
  // sqrt(12 sigma^2 / (n^3 - n)), sigma^2 = RSS / (n - 2). Needs n >= 3.
  double probability_slope_positive() const {
    const double slope = sxy_ / sxx_;
    const double rss = std::max(0.0, syy_ - sxy_ * slope);
    const double standard_error = std::sqrt(rss / (n_ - 2) * 12.0 / (n_ * n_ * n_ - n_));
    if (standard_error == 0) return slope > 0 ? 1.0 : slope < 0 ? 0.0 : 0.5;
    return 0.5 * std::erfc(-slope / standard_error / std::numbers::sqrt2);
  }

 private:
  double n_ = 0, mean_x_ = 0, mean_y_ = 0, sxx_ = 0, sxy_ = 0, syy_ = 0;
};

void check_threshold(double probability_threshold) {
  CUFACE_CHECK(probability_threshold > 0.5 && probability_threshold < 1,
               "plateau probability threshold must lie in (0.5, 1), got " + std::to_string(probability_threshold));
}

// Reading a schedule's state: a missing or mistyped field becomes one clear cuface::Error.
template <class T>
T field(const json& state, const char* name) {
  try {
    return state.at(name).get<T>();
  } catch (const json::exception& e) {
    throw Error(std::string("learning-rate schedule state: field '") + name + "': " + e.what());
  }
}

void check_type(const json& state, const std::string& type) {
  const auto found = field<std::string>(state, "type");
  CUFACE_CHECK(found == type, "learning-rate schedule state is a '" + found + "' schedule, expected '" + type + "'");
}

}  // namespace

// Walking backwards from the newest value, the line's slope against "steps back" is positive exactly
// when the loss falls forwards in time; each suffix is one more add().
double probability_loss_decreasing(std::span<const double> values) {
  if (values.size() < 3) return 0.5;
  RunningLine line;
  for (size_t i = values.size(); i-- > 0;) line.add(values[i]);
  return line.probability_slope_positive();
}

size_t count_steps_without_decrease(std::span<const double> values, double probability_threshold) {
  check_threshold(probability_threshold);
  RunningLine line;
  size_t count = 0;
  for (size_t k = 1; k <= values.size(); ++k) {
    line.add(values[values.size() - k]);
    if (k >= 3 && line.probability_slope_positive() < probability_threshold) count = k;
  }
  return count;
}

size_t count_steps_without_decrease_robust(std::span<const double> values, double probability_threshold,
                                           double quantile_discard) {
  check_threshold(probability_threshold);
  CUFACE_CHECK(quantile_discard >= 0 && quantile_discard <= 1, "quantile_discard must lie in [0, 1]");
  if (values.empty()) return 0;
  std::vector<double> sorted(values.begin(), values.end());
  const auto rank = size_t(std::round(double(sorted.size() - 1) * (1 - quantile_discard)));
  std::nth_element(sorted.begin(), sorted.begin() + std::ptrdiff_t(rank), sorted.end());
  const double upper_quantile = sorted[rank];

  RunningLine line;
  size_t count = 0;
  for (size_t k = 1; k <= values.size(); ++k) {
    const double value = values[values.size() - k];
    if (value <= upper_quantile) line.add(value);
    if (line.count() >= 3 && line.probability_slope_positive() < probability_threshold) count = k;
  }
  return count;
}

// ---- PlateauSchedule ----------------------------------------------------------------------------

PlateauSchedule::PlateauSchedule(double initial_lr, size_t patience, double shrink, double min_lr,
                                 size_t check_every, size_t history, double threshold, size_t keep_after_shrink)
    : initial_lr_(initial_lr),
      patience_(patience),
      shrink_(shrink),
      min_lr_(min_lr),
      check_every_(check_every),
      history_(history == 0 ? patience : history),
      threshold_(threshold),
      keep_after_shrink_(keep_after_shrink),
      lr_(initial_lr) {
  CUFACE_CHECK(initial_lr > 0, "plateau schedule: the initial learning rate must be positive");
  CUFACE_CHECK(patience >= 3, "plateau schedule: patience must be at least 3 steps");
  CUFACE_CHECK(shrink > 0 && shrink < 1, "plateau schedule: shrink must lie in (0, 1)");
  CUFACE_CHECK(min_lr >= 0, "plateau schedule: min_lr must not be negative");
  CUFACE_CHECK(check_every >= 1, "plateau schedule: check_every must be at least 1");
  CUFACE_CHECK(history_ >= patience_, "plateau schedule: a history of " + std::to_string(history_) +
                                          " losses can never show a plateau of " + std::to_string(patience_));
  CUFACE_CHECK(keep_after_shrink_ <= history_, "plateau schedule: keep_after_shrink exceeds the history");
  check_threshold(threshold);
}

PlateauSchedule PlateauSchedule::original(double initial_lr) {
  return PlateauSchedule(initial_lr, 15000, 0.1, 1e-6, 750, 15000, 0.51, 15000 - 4000);
}

std::span<const double> PlateauSchedule::recent_losses() const {
  const size_t n = std::min(losses_.size(), history_);
  return std::span<const double>(losses_).last(n);
}

void PlateauSchedule::record(double loss) {
  CUFACE_CHECK(std::isfinite(loss), "plateau schedule: loss at step " + std::to_string(steps_) + " is " +
                                        std::to_string(loss) + "; training has diverged");
  losses_.push_back(loss);
  if (losses_.size() >= 2 * history_)  // trim in batches: amortised O(1) per step
    losses_.erase(losses_.begin(), losses_.end() - std::ptrdiff_t(history_));
  ++steps_;
  if (steps_ % int64_t(check_every_) == 0) check_plateau();
}

std::optional<double> PlateauSchedule::lr_after_next_record() const {
  if ((steps_ + 1) % int64_t(check_every_) == 0 || should_stop()) return std::nullopt;
  return lr_;
}

void PlateauSchedule::check_plateau() {
  const std::span<const double> window = recent_losses();
  last_count_ = count_steps_without_decrease(window, threshold_);
  // The robust count is the second opinion: a plateau only if a few outliers are not what makes it.
  if (last_count_ < patience_ || count_steps_without_decrease_robust(window, threshold_) < patience_) return;
  lr_ *= shrink_;
  ++shrinks_;
  last_count_ = 0;
  const size_t keep = std::min(keep_after_shrink_, window.size());
  losses_.erase(losses_.begin(), losses_.end() - std::ptrdiff_t(keep));
}

json PlateauSchedule::to_json() const {
  const std::span<const double> window = recent_losses();
  return {{"type", "plateau"},
          {"initial_lr", initial_lr_},
          {"patience", patience_},
          {"shrink", shrink_},
          {"min_lr", min_lr_},
          {"check_every", check_every_},
          {"history", history_},
          {"threshold", threshold_},
          {"keep_after_shrink", keep_after_shrink_},
          {"lr", lr_},
          {"steps", steps_},
          {"shrinks", shrinks_},
          {"steps_without_decrease", last_count_},
          {"losses", std::vector<double>(window.begin(), window.end())}};
}

void PlateauSchedule::from_json(const json& state) {
  check_type(state, "plateau");
  PlateauSchedule restored(field<double>(state, "initial_lr"), field<size_t>(state, "patience"),
                           field<double>(state, "shrink"), field<double>(state, "min_lr"),
                           field<size_t>(state, "check_every"), field<size_t>(state, "history"),
                           field<double>(state, "threshold"), field<size_t>(state, "keep_after_shrink"));
  restored.lr_ = field<double>(state, "lr");
  restored.steps_ = field<int64_t>(state, "steps");
  restored.shrinks_ = field<size_t>(state, "shrinks");
  restored.last_count_ = field<size_t>(state, "steps_without_decrease");
  restored.losses_ = field<std::vector<double>>(state, "losses");
  CUFACE_CHECK(restored.lr_ > 0 && restored.steps_ >= 0 && restored.losses_.size() <= restored.history_,
               "plateau schedule state is inconsistent (rate, step count or loss history)");
  *this = std::move(restored);
}

// ---- StepSchedule and CosineSchedule --------------------------------------------------------------

StepSchedule::StepSchedule(double base_lr, std::vector<int64_t> milestones, double gamma)
    : base_lr_(base_lr), milestones_(std::move(milestones)), gamma_(gamma) {
  CUFACE_CHECK(base_lr > 0 && gamma > 0, "step schedule: base_lr and gamma must be positive");
  CUFACE_CHECK(std::is_sorted(milestones_.begin(), milestones_.end(), std::less_equal<int64_t>()),
               "step schedule: milestones must be strictly increasing");
}

double StepSchedule::lr_at(int64_t step) const {
  double lr = base_lr_;
  for (int64_t milestone : milestones_)
    if (step >= milestone) lr *= gamma_;
  return lr;
}

json StepSchedule::to_json() const {
  return {{"type", "step"}, {"base_lr", base_lr_}, {"milestones", milestones_}, {"gamma", gamma_}, {"steps", steps_}};
}

void StepSchedule::from_json(const json& state) {
  check_type(state, "step");
  StepSchedule restored(field<double>(state, "base_lr"), field<std::vector<int64_t>>(state, "milestones"),
                        field<double>(state, "gamma"));
  restored.steps_ = field<int64_t>(state, "steps");
  *this = std::move(restored);
}

CosineSchedule::CosineSchedule(double base_lr, int64_t total_steps, double floor_lr)
    : base_lr_(base_lr), total_steps_(total_steps), floor_lr_(floor_lr) {
  CUFACE_CHECK(base_lr > 0 && floor_lr >= 0 && floor_lr <= base_lr,
               "cosine schedule: need 0 <= floor_lr <= base_lr and base_lr > 0");
  CUFACE_CHECK(total_steps > 0, "cosine schedule: total_steps must be positive");
}

void CosineSchedule::set_total_steps(int64_t total_steps) {
  CUFACE_CHECK(total_steps > 0, "cosine schedule: total_steps must be positive");
  total_steps_ = total_steps;
}

std::optional<double> CosineSchedule::lr_after_next_record() const {
  if (steps_ + 1 >= total_steps_) return std::nullopt;
  return lr_at(steps_ + 1);
}

double CosineSchedule::lr_at(int64_t step) const {
  const double progress = double(std::clamp<int64_t>(step, 0, total_steps_)) / double(total_steps_);
  return floor_lr_ + (base_lr_ - floor_lr_) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
}

json CosineSchedule::to_json() const {
  return {{"type", "cosine"},
          {"base_lr", base_lr_},
          {"total_steps", total_steps_},
          {"floor_lr", floor_lr_},
          {"steps", steps_}};
}

void CosineSchedule::from_json(const json& state) {
  check_type(state, "cosine");
  CosineSchedule restored(field<double>(state, "base_lr"), field<int64_t>(state, "total_steps"),
                          field<double>(state, "floor_lr"));
  restored.steps_ = field<int64_t>(state, "steps");
  *this = std::move(restored);
}

std::unique_ptr<LrSchedule> lr_schedule_from_json(const json& state) {
  const auto type = field<std::string>(state, "type");
  std::unique_ptr<LrSchedule> schedule;
  if (type == "plateau")
    schedule = std::make_unique<PlateauSchedule>(1.0);
  else if (type == "step")
    schedule = std::make_unique<StepSchedule>(1.0, std::vector<int64_t>{});
  else if (type == "cosine")
    schedule = std::make_unique<CosineSchedule>(1.0, 1);
  else
    throw Error("learning-rate schedule state has unknown type '" + type + "' (plateau, step, cosine)");
  schedule->from_json(state);
  return schedule;
}

double warmup_factor(int64_t step, int64_t warmup_steps) {
  if (warmup_steps <= 0 || step >= warmup_steps) return 1.0;
  return double(std::max<int64_t>(step, 0) + 1) / double(warmup_steps);
}

}  // namespace cuface
