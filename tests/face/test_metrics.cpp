// face/eval/metrics against numpy / scikit-learn numbers (scripts/make_metric_fixtures.py), to 1e-6.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "engine/error.h"
#include "face/eval/metrics.h"
#include "common/source_dir.h"

namespace cuface::eval {
namespace {

using nlohmann::json;

json load_fixture(const std::string& name) {
  std::ifstream in(cuface::testing::fixture_path(name));
  EXPECT_TRUE(in) << "missing fixture " << name << " (run scripts/make_metric_fixtures.py)";
  return json::parse(in);
}

template <class T>
std::vector<T> vec(const json& j) {
  return j.get<std::vector<T>>();
}

void expect_near_all(const std::vector<double>& got, const json& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i].get<double>(), 1e-6) << what << " [" << i << "]";
}

class VerificationFixture : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    static const json all = load_fixture("metrics_verification.json");
    set = all["sets"][size_t(GetParam())];
    far_targets = vec<double>(all["far_targets"]);
    for (int s : vec<int>(set["same"])) same.push_back(uint8_t(s));
    score = vec<double>(set["score"]);
    distance = vec<double>(set["distance"]);
    squared = vec<double>(set["squared_distance"]);
  }
  json set;
  std::vector<double> far_targets, score, distance, squared;
  std::vector<uint8_t> same;
};

TEST_P(VerificationFixture, RocMatchesSklearn) {
  const Roc roc = roc_curve(score, same);
  expect_near_all(roc.far, set["roc"]["far"], set["name"].get<std::string>() + " far");
  expect_near_all(roc.tar, set["roc"]["tar"], set["name"].get<std::string>() + " tar");
  EXPECT_TRUE(std::isinf(roc.threshold[0]));
  expect_near_all(std::vector<double>(roc.threshold.begin() + 1, roc.threshold.end()), set["roc"]["threshold"],
                  "threshold");
  EXPECT_NEAR(area_under_curve(roc), set["auc"].get<double>(), 1e-6);
}

TEST_P(VerificationFixture, TarAtFarMatchesSklearnRoc) {
  const std::vector<TarAtFar> got = tar_at_far(score, same, far_targets);
  ASSERT_EQ(got.size(), set["tar_at_far"].size());
  for (size_t i = 0; i < got.size(); ++i) {
    const json& want = set["tar_at_far"][i];
    SCOPED_TRACE("FAR " + std::to_string(got[i].far_target));
    ASSERT_EQ(got[i].supported, want["supported"].get<bool>());
    if (!got[i].supported) {
      EXPECT_TRUE(std::isnan(got[i].tar));
      continue;
    }
    EXPECT_NEAR(got[i].tar, want["tar"].get<double>(), 1e-6);
    EXPECT_NEAR(got[i].far, want["far"].get<double>(), 1e-6);
    EXPECT_NEAR(got[i].threshold, want["threshold"].get<double>(), 1e-6);
    EXPECT_LE(got[i].far, got[i].far_target);
  }
}

TEST_P(VerificationFixture, KFoldMatchesInsightFaceNumpy) {
  const KFoldAccuracy got = kfold_accuracy(squared, same, 10, insightface_thresholds());
  const json& want = set["kfold"];
  expect_near_all(got.fold_accuracy, want["fold_accuracy"], "fold accuracy");
  expect_near_all(got.fold_threshold, want["fold_threshold"], "fold threshold");
  EXPECT_NEAR(got.accuracy_mean, want["accuracy_mean"].get<double>(), 1e-6);
  EXPECT_NEAR(got.accuracy_std, want["accuracy_std"].get<double>(), 1e-6);
  EXPECT_NEAR(got.threshold_mean, want["threshold_mean"].get<double>(), 1e-6);
}

TEST_P(VerificationFixture, OriginalBalancedAccuracyAndGap) {
  const BalancedAccuracy got = best_balanced_accuracy(distance, same, original_thresholds());
  const json& want = set["original"];
  EXPECT_NEAR(got.accuracy, want["accuracy"].get<double>(), 1e-6);
  EXPECT_NEAR(got.threshold, want["threshold"].get<double>(), 1e-6);
  EXPECT_NEAR(got.same_accuracy, want["same_accuracy"].get<double>(), 1e-6);
  EXPECT_NEAR(got.different_accuracy, want["different_accuracy"].get<double>(), 1e-6);
  EXPECT_NEAR(distance_gap(distance, same), set["gap"].get<double>(), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Sets, VerificationFixture, ::testing::Values(0, 1, 2));

TEST(Metrics, ThresholdGrids) {
  const std::vector<double> insightface = insightface_thresholds();
  ASSERT_EQ(insightface.size(), 400u);
  EXPECT_EQ(insightface.front(), 0.0);
  EXPECT_NEAR(insightface.back(), 3.99, 1e-12);
  const std::vector<double> original = original_thresholds();
  ASSERT_EQ(original.size(), 141u);
  EXPECT_NEAR(original.front(), 0.4, 1e-12);
  EXPECT_NEAR(original.back(), 1.8, 1e-12);
}

TEST(Metrics, TarAtFarEdgeCases) {
  // 4 impostors: FAR 0.25 allows one false accept (threshold = the second highest impostor, 0.3),
  // FAR 0.1 needs 10 impostors and is not supported, FAR 1 accepts everything.
  const std::vector<double> score{0.9, 0.5, 0.2, 0.4, 0.3, 0.1, 0.0};
  const std::vector<uint8_t> same{1, 1, 1, 0, 0, 0, 0};
  const std::vector<double> targets{0.25, 0.1, 1.0};
  const std::vector<TarAtFar> r = tar_at_far(score, same, targets);
  EXPECT_TRUE(r[0].supported);
  EXPECT_DOUBLE_EQ(r[0].threshold, 0.3);
  EXPECT_DOUBLE_EQ(r[0].tar, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r[0].far, 0.25);
  EXPECT_FALSE(r[1].supported);
  EXPECT_TRUE(r[2].supported);
  EXPECT_DOUBLE_EQ(r[2].tar, 1.0);
  EXPECT_DOUBLE_EQ(r[2].far, 1.0);
}

TEST(Metrics, RejectsBadInput) {
  const std::vector<double> score{0.1, 0.2};
  const std::vector<uint8_t> one_label{1};
  EXPECT_THROW(roc_curve(score, one_label), Error);
  const std::vector<uint8_t> only_same{1, 1};
  EXPECT_THROW(roc_curve(score, only_same), Error);
  const std::vector<double> with_nan{0.1, std::nan("")};
  const std::vector<uint8_t> both{1, 0};
  EXPECT_THROW(roc_curve(with_nan, both), Error);
  EXPECT_THROW(kfold_accuracy(score, both, 10, insightface_thresholds()), Error);  // fewer pairs than folds
}

TEST(Metrics, ClassificationMatchesSklearn) {
  const json c = load_fixture("metrics_classification.json");
  const int classes = c["classes"].get<int>();
  const std::vector<int> truth = vec<int>(c["truth"]), predicted = vec<int>(c["predicted"]);
  const ConfusionMatrix m = confusion_matrix(truth, predicted, classes);
  for (int t = 0; t < classes; ++t)
    for (int p = 0; p < classes; ++p) EXPECT_EQ(m.at(t, p), c["confusion"][size_t(t)][size_t(p)].get<int64_t>());
  for (int t = 0; t < classes; ++t) {
    const json& want = c["class_accuracy"][size_t(t)];
    if (want.is_null())
      EXPECT_TRUE(std::isnan(m.class_accuracy(t))) << "class " << t << " has no samples";
    else
      EXPECT_NEAR(m.class_accuracy(t), want.get<double>(), 1e-6);
  }
  EXPECT_NEAR(m.overall_accuracy(), c["overall_accuracy"].get<double>(), 1e-6);
  EXPECT_NEAR(m.average_accuracy(), c["average_accuracy"].get<double>(), 1e-6);
  EXPECT_NEAR(within_one_accuracy(truth, predicted), c["within_one"].get<double>(), 1e-6);
  EXPECT_NEAR(mean_absolute_error(vec<double>(c["age_true"]), vec<double>(c["age_predicted"])),
              c["mae"].get<double>(), 1e-6);

  std::vector<float> scores;
  for (const json& row : c["scores"])
    for (const json& v : row) scores.push_back(v.get<float>());
  for (int n = 1; n <= 3; ++n)
    EXPECT_NEAR(top_n_accuracy(scores, classes, truth, n), c["top_n"][std::to_string(n)].get<double>(), 1e-6)
        << "top-" << n;
}

}  // namespace
}  // namespace cuface::eval
