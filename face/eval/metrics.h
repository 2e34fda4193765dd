// Evaluation metrics: face verification (ROC, AUC, TAR@FAR, the LFW k-fold protocol, the original
// project's balanced accuracy and gap) and attribute classification (confusion matrix, per-class and
// average accuracy, MAE, within-one-bin and top-N accuracy).
//
// Every verification function takes one number per pair and `same[i]` = 1 for a same-person
// (genuine) pair, 0 for a different-person (impostor) pair. Scores are similarities (higher = more
// alike, e.g. cosine similarity); distances are lower = more alike. Each function says which it takes.
// scripts/make_metric_fixtures.py recomputes all of them with numpy and scikit-learn; the tests compare.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cuface::eval {

// ---- verification ------------------------------------------------------------------------------

// The ROC of a score: one point per distinct score value, like sklearn.metrics.roc_curve with
// drop_intermediate=False. A pair is accepted at threshold t when score >= t. Point 0 is (0, 0) with
// threshold +inf (sklearn writes max score + 1 there); thresholds then descend to the lowest score.
struct Roc {
  std::vector<double> threshold;
  std::vector<double> far;  // false accept rate: accepted impostors / impostors
  std::vector<double> tar;  // true accept rate: accepted genuine pairs / genuine pairs
  int64_t genuine = 0, impostor = 0;
};
Roc roc_curve(std::span<const double> score, std::span<const uint8_t> same);

// Area under the ROC by the trapezoid rule (sklearn's roc_auc_score: ties count one half).
double area_under_curve(const Roc& roc);

// TAR at a FAR target, without interpolation. With N impostors, k = floor(far_target * N) false
// accepts are allowed; the threshold is the (k+1)-th highest impostor score and a pair is accepted
// when its score is strictly above it, so at most k impostors pass. This is the highest ROC point
// whose FAR <= far_target. It is `supported` only when k >= 1 (N >= 1 / far_target); otherwise the
// numbers are NaN. With k >= N every pair is accepted (threshold -inf).
struct TarAtFar {
  double far_target = 0;
  bool supported = false;
  double tar = 0;        // accepted genuine pairs / genuine pairs
  double far = 0;        // the FAR actually reached, <= far_target
  double threshold = 0;  // accept when score > threshold
};
std::vector<TarAtFar> tar_at_far(std::span<const double> score, std::span<const uint8_t> same,
                                 std::span<const double> far_targets);
// The same rule for one target over scores already split and sorted ascending: `impostor` sets the
// threshold, tar = genuine scores above it / `genuine_total` (open-set identification divides by all
// mated probes, not only the ones whose best candidate was right: eval/identification.cpp).
TarAtFar operating_point(const std::vector<double>& impostor, const std::vector<double>& genuine, double genuine_total,
                         double far_target);

// The LFW protocol as InsightFace's verification.py (calculate_roc) runs it: the pairs are split in
// order into `folds` contiguous folds (sklearn KFold without shuffling: the first n % folds folds
// hold one pair more); for each fold the threshold with the best accuracy on the other folds (the
// first one on ties) is applied to the held-out fold. A pair is predicted "same" when its distance
// is strictly below the threshold. InsightFace uses squared Euclidean distances of L2-normalised
// embeddings and the thresholds 0, 0.01, ..., 3.99 (insightface_thresholds()).
struct KFoldAccuracy {
  std::vector<double> fold_accuracy;   // on each held-out fold
  std::vector<double> fold_threshold;  // chosen on the other folds
  double accuracy_mean = 0;
  double accuracy_std = 0;  // population standard deviation over folds (numpy's np.std, ddof = 0)
  double threshold_mean = 0;
};
std::vector<double> insightface_thresholds();  // i * 0.01 for i = 0..399, as np.arange(0, 4, 0.01)
KFoldAccuracy kfold_accuracy(std::span<const double> distance, std::span<const uint8_t> same, int folds,
                             std::span<const double> thresholds);

// The original project's figure: balanced accuracy (mean of the accuracy on same pairs and on
// different pairs) maximised over thresholds on the Euclidean distance of L2-normalised embeddings;
// a pair is "same" when its distance is strictly below the threshold; the first best threshold wins.
struct BalancedAccuracy {
  double accuracy = 0;            // (same_accuracy + different_accuracy) / 2 at `threshold`
  double threshold = 0;
  double same_accuracy = 0;       // same pairs with distance < threshold / same pairs
  double different_accuracy = 0;  // different pairs with distance >= threshold / different pairs
};
std::vector<double> original_thresholds();  // 0.4 + i * 0.01 for i = 0..140 (0.4 to 1.8 inclusive)
BalancedAccuracy best_balanced_accuracy(std::span<const double> distance, std::span<const uint8_t> same,
                                        std::span<const double> thresholds);

// The original's Gap = (mean different-pair distance - mean same-pair distance) / sample standard
// deviation (ddof = 1) of the different-pair distances. Needs one same and two different pairs.
double distance_gap(std::span<const double> distance, std::span<const uint8_t> same);

// ---- classification ------------------------------------------------------------------------------

// counts[t * classes + p]: samples of true class t predicted as p.
struct ConfusionMatrix {
  int classes = 0;
  std::vector<int64_t> counts;

  int64_t at(int truth, int predicted) const { return counts[size_t(truth) * classes + predicted]; }
  int64_t row_total(int truth) const;
  int64_t total() const;
  // Row-normalised: the fraction of class `truth` predicted as `predicted` (NaN for an empty row).
  double rate(int truth, int predicted) const;
  double overall_accuracy() const;  // the diagonal's sum / all samples
  double class_accuracy(int truth) const { return rate(truth, truth); }
  // The original's "average accuracy": the mean of the row-normalised diagonal over the classes
  // that have samples (sklearn's balanced_accuracy_score).
  double average_accuracy() const;
};
ConfusionMatrix confusion_matrix(std::span<const int> truth, std::span<const int> predicted, int classes);

double mean_absolute_error(std::span<const double> truth, std::span<const double> predicted);
// Fraction of samples whose predicted class index is within one of the true one (ordered bins, e.g. age).
double within_one_accuracy(std::span<const int> truth, std::span<const int> predicted);
// Fraction of samples whose true class is among the `n` highest of its row of `scores`
// ([samples x classes], row-major). A class counts as in the top n when fewer than n classes score
// strictly higher, so ties favour the true class.
double top_n_accuracy(std::span<const float> scores, int classes, std::span<const int> truth, int n);

}  // namespace cuface::eval
