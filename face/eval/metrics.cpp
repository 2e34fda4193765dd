#include "face/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "engine/error.h"

namespace cuface::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

void check_pairs(std::span<const double> value, std::span<const uint8_t> same, const char* what) {
  CUFACE_CHECK(value.size() == same.size(), std::string(what) + ": " + std::to_string(value.size()) +
                                                " values but " + std::to_string(same.size()) + " labels");
  for (double v : value) CUFACE_CHECK(std::isfinite(v), std::string(what) + ": a score or distance is not finite");
}

// The values of genuine and of impostor pairs, each sorted ascending.
struct SortedByLabel {
  std::vector<double> genuine, impostor;
};
SortedByLabel split_sorted(std::span<const double> value, std::span<const uint8_t> same) {
  SortedByLabel s;
  for (size_t i = 0; i < value.size(); ++i) (same[i] ? s.genuine : s.impostor).push_back(value[i]);
  std::sort(s.genuine.begin(), s.genuine.end());
  std::sort(s.impostor.begin(), s.impostor.end());
  return s;
}

// How many of the ascending `sorted` values are strictly below / strictly above t.
int64_t count_below(const std::vector<double>& sorted, double t) {
  return std::lower_bound(sorted.begin(), sorted.end(), t) - sorted.begin();
}
int64_t count_above(const std::vector<double>& sorted, double t) {
  return sorted.end() - std::upper_bound(sorted.begin(), sorted.end(), t);
}

std::vector<double> grid(double start, double step, int count) {
  std::vector<double> t(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) t[size_t(i)] = start + i * step;
  return t;
}

}  // namespace

// ---- verification ------------------------------------------------------------------------------

Roc roc_curve(std::span<const double> score, std::span<const uint8_t> same) {
  check_pairs(score, same, "roc_curve");
  std::vector<size_t> order(score.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });

  Roc roc;
  for (uint8_t s : same) (s ? roc.genuine : roc.impostor) += 1;
  CUFACE_CHECK(roc.genuine > 0 && roc.impostor > 0, "roc_curve needs both same and different pairs");

  // Lowering the threshold through each distinct score accepts every pair with that score at once.
  int64_t accepted_genuine = 0, accepted_impostor = 0;
  roc.threshold.push_back(kInf);
  roc.far.push_back(0.0);
  roc.tar.push_back(0.0);
  for (size_t i = 0; i < order.size(); ++i) {
    (same[order[i]] ? accepted_genuine : accepted_impostor) += 1;
    const bool last_of_value = i + 1 == order.size() || score[order[i + 1]] != score[order[i]];
    if (!last_of_value) continue;
    roc.threshold.push_back(score[order[i]]);
    roc.far.push_back(double(accepted_impostor) / double(roc.impostor));
    roc.tar.push_back(double(accepted_genuine) / double(roc.genuine));
  }
  return roc;
}

double area_under_curve(const Roc& roc) {
  double area = 0.0;
  for (size_t i = 1; i < roc.far.size(); ++i)
    area += (roc.far[i] - roc.far[i - 1]) * (roc.tar[i] + roc.tar[i - 1]) / 2.0;
  return area;
}

std::vector<TarAtFar> tar_at_far(std::span<const double> score, std::span<const uint8_t> same,
                                 std::span<const double> far_targets) {
  check_pairs(score, same, "tar_at_far");
  const SortedByLabel s = split_sorted(score, same);
  CUFACE_CHECK(!s.genuine.empty() && !s.impostor.empty(), "tar_at_far needs both same and different pairs");

  std::vector<TarAtFar> out;
  for (double target : far_targets) {
    CUFACE_CHECK(target > 0 && target <= 1, "tar_at_far: FAR target must be in (0, 1]");
    out.push_back(operating_point(s.impostor, s.genuine, double(s.genuine.size()), target));
  }
  return out;
}

TarAtFar operating_point(const std::vector<double>& impostor, const std::vector<double>& genuine, double genuine_total,
                         double far_target) {
  const int64_t impostors = int64_t(impostor.size());
  TarAtFar r;
  r.far_target = far_target;
  // The small slack keeps an exact product (1e-3 * 3000 = 3) from rounding down to 2.
  const int64_t allowed = int64_t(std::floor(far_target * double(impostors) + 1e-9));
  r.supported = allowed >= 1;
  if (!r.supported) {
    r.tar = r.far = r.threshold = kNaN;
    return r;
  }
  // impostor is ascending: the (allowed+1)-th highest impostor score sits at index N-1-allowed.
  r.threshold = allowed >= impostors ? -kInf : impostor[size_t(impostors - 1 - allowed)];
  r.tar = double(count_above(genuine, r.threshold)) / genuine_total;
  r.far = double(count_above(impostor, r.threshold)) / double(impostors);
  return r;
}

std::vector<double> insightface_thresholds() { return grid(0.0, 0.01, 400); }
std::vector<double> original_thresholds() { return grid(0.4, 0.01, 141); }

KFoldAccuracy kfold_accuracy(std::span<const double> distance, std::span<const uint8_t> same, int folds,
                             std::span<const double> thresholds) {
  check_pairs(distance, same, "kfold_accuracy");
  const int64_t n = int64_t(distance.size());
  CUFACE_CHECK(folds >= 2 && n >= folds, "kfold_accuracy: need at least 2 folds and one pair per fold (" +
                                             std::to_string(n) + " pairs, " + std::to_string(folds) + " folds)");
  CUFACE_CHECK(!thresholds.empty(), "kfold_accuracy: no thresholds");

  // Accuracy on a subset at threshold t = (genuine below t + impostors at or above t) / size. The
  // training folds' counts are the whole set's minus the held-out fold's, so each is two searches.
  const SortedByLabel all = split_sorted(distance, same);
  auto correct = [](const SortedByLabel& s, double t) {
    return count_below(s.genuine, t) + (int64_t(s.impostor.size()) - count_below(s.impostor, t));
  };

  KFoldAccuracy r;
  int64_t begin = 0;
  for (int f = 0; f < folds; ++f) {
    const int64_t size = n / folds + (f < n % folds ? 1 : 0);
    const SortedByLabel test = split_sorted(distance.subspan(size_t(begin), size_t(size)),
                                            same.subspan(size_t(begin), size_t(size)));
    begin += size;

    size_t best = 0;
    int64_t best_correct = -1;
    for (size_t i = 0; i < thresholds.size(); ++i) {
      const int64_t train_correct = correct(all, thresholds[i]) - correct(test, thresholds[i]);
      if (train_correct > best_correct) best_correct = train_correct, best = i;
    }
    r.fold_threshold.push_back(thresholds[best]);
    r.fold_accuracy.push_back(double(correct(test, thresholds[best])) / double(size));
  }

  for (int f = 0; f < folds; ++f) {
    r.accuracy_mean += r.fold_accuracy[size_t(f)] / folds;
    r.threshold_mean += r.fold_threshold[size_t(f)] / folds;
  }
  double variance = 0.0;
  for (double a : r.fold_accuracy) variance += (a - r.accuracy_mean) * (a - r.accuracy_mean);
  r.accuracy_std = std::sqrt(variance / folds);
  return r;
}

BalancedAccuracy best_balanced_accuracy(std::span<const double> distance, std::span<const uint8_t> same,
                                        std::span<const double> thresholds) {
  check_pairs(distance, same, "best_balanced_accuracy");
  const SortedByLabel s = split_sorted(distance, same);
  CUFACE_CHECK(!s.genuine.empty() && !s.impostor.empty(), "best_balanced_accuracy needs both same and different pairs");
  CUFACE_CHECK(!thresholds.empty(), "best_balanced_accuracy: no thresholds");

  BalancedAccuracy best;
  best.accuracy = -1.0;
  for (double t : thresholds) {
    BalancedAccuracy r;
    r.threshold = t;
    r.same_accuracy = double(count_below(s.genuine, t)) / double(s.genuine.size());
    r.different_accuracy = 1.0 - double(count_below(s.impostor, t)) / double(s.impostor.size());
    r.accuracy = (r.same_accuracy + r.different_accuracy) / 2.0;
    if (r.accuracy > best.accuracy) best = r;
  }
  return best;
}

double distance_gap(std::span<const double> distance, std::span<const uint8_t> same) {
  check_pairs(distance, same, "distance_gap");
  const SortedByLabel s = split_sorted(distance, same);
  CUFACE_CHECK(!s.genuine.empty() && s.impostor.size() >= 2,
               "distance_gap needs one same pair and two different pairs");
  auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); };
  const double same_mean = mean(s.genuine), different_mean = mean(s.impostor);
  double squares = 0.0;
  for (double d : s.impostor) squares += (d - different_mean) * (d - different_mean);
  const double different_std = std::sqrt(squares / double(s.impostor.size() - 1));
  return (different_mean - same_mean) / different_std;
}

// ---- classification ------------------------------------------------------------------------------

int64_t ConfusionMatrix::row_total(int truth) const {
  int64_t sum = 0;
  for (int p = 0; p < classes; ++p) sum += at(truth, p);
  return sum;
}

int64_t ConfusionMatrix::total() const { return std::accumulate(counts.begin(), counts.end(), int64_t(0)); }

double ConfusionMatrix::rate(int truth, int predicted) const {
  const int64_t row = row_total(truth);
  return row == 0 ? kNaN : double(at(truth, predicted)) / double(row);
}

double ConfusionMatrix::overall_accuracy() const {
  int64_t diagonal = 0;
  for (int c = 0; c < classes; ++c) diagonal += at(c, c);
  return double(diagonal) / double(total());
}

double ConfusionMatrix::average_accuracy() const {
  double sum = 0.0;
  int present = 0;
  for (int c = 0; c < classes; ++c)
    if (row_total(c) > 0) sum += class_accuracy(c), ++present;
  return present == 0 ? kNaN : sum / present;
}

ConfusionMatrix confusion_matrix(std::span<const int> truth, std::span<const int> predicted, int classes) {
  CUFACE_CHECK(truth.size() == predicted.size(), "confusion_matrix: label counts differ");
  CUFACE_CHECK(classes >= 1, "confusion_matrix: no classes");
  ConfusionMatrix m;
  m.classes = classes;
  m.counts.assign(size_t(classes) * size_t(classes), 0);
  for (size_t i = 0; i < truth.size(); ++i) {
    CUFACE_CHECK(truth[i] >= 0 && truth[i] < classes && predicted[i] >= 0 && predicted[i] < classes,
                 "confusion_matrix: label " + std::to_string(i) + " outside 0.." + std::to_string(classes - 1));
    m.counts[size_t(truth[i]) * classes + size_t(predicted[i])] += 1;
  }
  return m;
}

double mean_absolute_error(std::span<const double> truth, std::span<const double> predicted) {
  CUFACE_CHECK(truth.size() == predicted.size() && !truth.empty(), "mean_absolute_error: sizes differ or empty");
  double sum = 0.0;
  for (size_t i = 0; i < truth.size(); ++i) sum += std::fabs(truth[i] - predicted[i]);
  return sum / double(truth.size());
}

double within_one_accuracy(std::span<const int> truth, std::span<const int> predicted) {
  CUFACE_CHECK(truth.size() == predicted.size() && !truth.empty(), "within_one_accuracy: sizes differ or empty");
  int64_t hits = 0;
  for (size_t i = 0; i < truth.size(); ++i) hits += std::abs(truth[i] - predicted[i]) <= 1;
  return double(hits) / double(truth.size());
}

double top_n_accuracy(std::span<const float> scores, int classes, std::span<const int> truth, int n) {
  CUFACE_CHECK(classes >= 1 && scores.size() == truth.size() * size_t(classes) && !truth.empty(),
               "top_n_accuracy: scores must be [samples x classes]");
  CUFACE_CHECK(n >= 1, "top_n_accuracy: n must be at least 1");
  int64_t hits = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    CUFACE_CHECK(truth[i] >= 0 && truth[i] < classes, "top_n_accuracy: label outside the classes");
    const float* row = scores.data() + i * size_t(classes);
    int higher = 0;
    for (int c = 0; c < classes; ++c) higher += row[c] > row[truth[i]];
    hits += higher < n;
  }
  return double(hits) / double(truth.size());
}

}  // namespace cuface::eval
