// face/eval/verification: pairing rows (through a model-like embedder and through precomputed
// embeddings), normalisation, and the figures against the metrics computed from naive distances.
#include <gtest/gtest.h>

#include <cmath>

#include "common/reference.h"
#include "engine/error.h"
#include "face/eval/verification.h"
#include "scratch_dir.h"

namespace cuface::eval {
namespace {

using testing::ScratchDir;

// A pairs file over people P0..P5 with 3 images each, and the image files themselves.
PairList make_pairs(const ScratchDir& dir) {
  for (int p = 0; p < 6; ++p)
    for (int i = 1; i <= 3; ++i) dir.write("img/P" + std::to_string(p) + "/P" + std::to_string(p) + "_000" + std::to_string(i) + ".jpg", "x");
  std::string text = "1 12\n";
  for (int k = 0; k < 12; ++k) text += "P" + std::to_string(k % 6) + " " + std::to_string(1 + k % 2) + " 3\n";
  for (int k = 0; k < 12; ++k)
    text += "P" + std::to_string(k % 6) + " " + std::to_string(1 + k % 3) + " P" + std::to_string((k + 1) % 6) + " " +
            std::to_string(1 + (k + 1) % 3) + "\n";
  return read_pairs(dir.write("pairs.txt", text));
}

// A stand-in for a network: a fixed random vector per image path, scaled by an arbitrary factor.
Tensor fake_embedding(const std::string& key, int dim) {
  const uint64_t seed = std::hash<std::string>{}(key);
  Tensor row = testing::random_tensor({1, dim}, seed);
  const float scale = 0.5f + float(seed % 7);
  for (int k = 0; k < dim; ++k) row.data<float>()[k] *= scale;
  return row;
}

TEST(Verification, EmbedderAndPrecomputedAgree) {
  ScratchDir dir;
  const PairList pairs = make_pairs(dir);
  const auto root = dir / "img";
  const int dim = 12;
  std::vector<std::filesystem::path> asked;
  const ImageEmbedder embed = [&](const std::vector<std::filesystem::path>& images) {
    asked = images;
    Tensor m = Tensor::empty({int64_t(images.size()), dim});
    for (size_t i = 0; i < images.size(); ++i) {
      const Tensor row = fake_embedding(image_key(images[i], root), dim);
      std::copy(row.data<float>(), row.data<float>() + dim, m.data<float>() + i * dim);
    }
    return m;
  };
  const PairEmbeddings embedded = embed_pairs(pairs, root, embed);
  EXPECT_EQ(asked.size(), pairs.images().size());  // each distinct image once
  EXPECT_EQ(asked[0], root / "P0/P0_0001.jpg");

  // The same vectors as a precomputed table, in another order and with absolute paths.
  Embeddings table{Tensor::empty({int64_t(asked.size()), dim}), {}};
  for (size_t i = 0; i < asked.size(); ++i) {
    const size_t from = asked.size() - 1 - i;
    const Tensor row = fake_embedding(image_key(asked[from], root), dim);
    std::copy(row.data<float>(), row.data<float>() + dim, table.matrix.data<float>() + i * dim);
    table.paths.push_back(std::filesystem::absolute(asked[from]).string());
  }
  const PairEmbeddings looked_up = lookup_pairs(pairs, root, table, "table");

  const VerificationResult a = evaluate_verification(embedded, 4), b = evaluate_verification(looked_up, 4);
  EXPECT_EQ(a.kfold.fold_accuracy, b.kfold.fold_accuracy);
  EXPECT_DOUBLE_EQ(a.gap, b.gap);
  EXPECT_DOUBLE_EQ(a.auc, b.auc);

  // The figures equal the metrics on distances computed here naively from the normalised rows.
  std::vector<double> cosine, squared, distance;
  for (size_t p = 0; p < embedded.rows.size(); ++p) {
    const float* x = embedded.matrix.data<float>() + embedded.rows[p][0] * dim;
    const float* y = embedded.matrix.data<float>() + embedded.rows[p][1] * dim;
    double xx = 0, yy = 0, xy = 0;
    for (int k = 0; k < dim; ++k) xx += double(x[k]) * x[k], yy += double(y[k]) * y[k], xy += double(x[k]) * y[k];
    cosine.push_back(xy / std::sqrt(xx * yy));
    squared.push_back(2.0 - 2.0 * cosine.back());
    distance.push_back(std::sqrt(squared.back()));
  }
  EXPECT_NEAR(a.gap, distance_gap(distance, embedded.same), 1e-9);
  EXPECT_NEAR(a.auc, area_under_curve(roc_curve(cosine, embedded.same)), 1e-9);
  EXPECT_NEAR(a.best.accuracy, best_balanced_accuracy(distance, embedded.same, original_thresholds()).accuracy, 1e-9);
  EXPECT_NEAR(a.kfold.accuracy_mean, kfold_accuracy(squared, embedded.same, 4, insightface_thresholds()).accuracy_mean,
              1e-9);
  EXPECT_EQ(a.tar_at_far.size(), 3u);
  EXPECT_TRUE(a.tar_at_far[0].supported);   // 12 different pairs allow FAR 1e-1
  EXPECT_FALSE(a.tar_at_far[1].supported);  // but not 1e-2
}

TEST(Verification, MissingImagesAndZeroRows) {
  ScratchDir dir;
  const PairList pairs = make_pairs(dir);
  std::filesystem::remove(dir / "img/P2/P2_0003.jpg");
  bool called = false;
  const ImageEmbedder never = [&](const std::vector<std::filesystem::path>&) {
    called = true;
    return Tensor();
  };
  try {
    embed_pairs(pairs, dir / "img", never);
    FAIL() << "a missing image must be reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pairs.txt:4: image"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(called) << "images are checked before anything is embedded";

  PairEmbeddings zero{Tensor::zeros({2, 4}), {{0, 1}, {0, 1}, {1, 0}}, {1, 0, 0}};
  EXPECT_THROW(evaluate_verification(zero, 2), Error);
}

}  // namespace
}  // namespace cuface::eval
