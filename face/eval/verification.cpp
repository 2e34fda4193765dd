#include "face/eval/verification.h"

#include <cmath>
#include <unordered_map>

#include "engine/error.h"

namespace cuface::eval {

namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> same_flags(const PairList& pairs) {
  std::vector<uint8_t> same;
  for (const VerificationPair& p : pairs.pairs) same.push_back(p.same ? 1 : 0);
  return same;
}

}  // namespace

PairEmbeddings embed_pairs(const PairList& pairs, const fs::path& root, const ImageEmbedder& embed) {
  check_pair_images(pairs, root);
  const std::vector<std::string> images = pairs.images();
  std::vector<fs::path> paths;
  std::unordered_map<std::string, int64_t> row_of_image;
  for (const std::string& image : images) {
    row_of_image[image_key(image, root)] = int64_t(paths.size());
    paths.push_back(root / image);
  }
  PairEmbeddings out;
  out.matrix = embed(paths);
  CUFACE_CHECK(out.matrix.rank() == 2 && out.matrix.size(0) == int64_t(paths.size()),
               "the embedder returned " + out.matrix.str() + " for " + std::to_string(paths.size()) + " images");
  out.rows = pair_rows(pairs, root, row_of_image, "the embedded images");
  out.same = same_flags(pairs);
  return out;
}

PairEmbeddings lookup_pairs(const PairList& pairs, const fs::path& root, Embeddings embeddings,
                            const std::string& table_name) {
  std::unordered_map<std::string, int64_t> row_of_image;
  for (size_t i = 0; i < embeddings.paths.size(); ++i)
    row_of_image.emplace(listed_image_key(embeddings.paths[i], root), int64_t(i));
  PairEmbeddings out;
  out.rows = pair_rows(pairs, root, row_of_image, table_name);
  out.matrix = std::move(embeddings.matrix);
  out.same = same_flags(pairs);
  return out;
}

VerificationResult evaluate_verification(const PairEmbeddings& input, int folds) {
  const Tensor& m = input.matrix;
  CUFACE_CHECK(m.rank() == 2 && m.dtype() == DType::F32 && !m.is_cuda(), "embeddings must be a CPU f32 matrix");
  CUFACE_CHECK(input.rows.size() == input.same.size(), "one same/different flag per pair");
  const int64_t dim = m.size(1);
  const float* data = m.data<float>();

  // Rows are normalised in double precision, as InsightFace does (sklearn.preprocessing.normalize).
  auto norm_of = [&](int64_t row) {
    CUFACE_CHECK(row >= 0 && row < m.size(0), "pair row outside the embeddings");
    double sum = 0.0;
    for (int64_t k = 0; k < dim; ++k) sum += double(data[row * dim + k]) * double(data[row * dim + k]);
    if (!(sum > 0.0) || !std::isfinite(sum))
      throw Error("embedding row " + std::to_string(row) + " is zero or not finite; it cannot be normalised");
    return std::sqrt(sum);
  };

  std::vector<double> cosine, squared, distance;
  for (const auto& [a, b] : input.rows) {
    const double na = norm_of(a), nb = norm_of(b);
    double dot = 0.0, sq = 0.0;
    for (int64_t k = 0; k < dim; ++k) {
      const double x = double(data[a * dim + k]) / na, y = double(data[b * dim + k]) / nb;
      dot += x * y;
      sq += (x - y) * (x - y);
    }
    cosine.push_back(dot);
    squared.push_back(sq);
    distance.push_back(std::sqrt(sq));
  }

  VerificationResult r;
  r.pairs = int64_t(input.same.size());
  for (uint8_t s : input.same) (s ? r.same_pairs : r.different_pairs) += 1;
  if (r.same_pairs == 0 || r.different_pairs < 2)
    throw Error("verification needs same-person pairs and at least two different-person pairs (have " +
                std::to_string(r.same_pairs) + " and " + std::to_string(r.different_pairs) + ")");
  if (folds < 2 || folds > r.pairs)
    throw Error("cannot split " + std::to_string(r.pairs) + " pairs into " + std::to_string(folds) +
                " folds (--folds K: from 2 to the number of pairs)");

  r.folds = folds;
  r.kfold = kfold_accuracy(squared, input.same, folds, insightface_thresholds());
  r.best = best_balanced_accuracy(distance, input.same, original_thresholds());
  r.gap = distance_gap(distance, input.same);
  r.roc = roc_curve(cosine, input.same);
  r.auc = area_under_curve(r.roc);
  r.tar_at_far = tar_at_far(cosine, input.same, kReportedFars);
  for (const TarAtFar& lower : tar_at_far(cosine, input.same, kLowerFars))
    if (lower.supported) r.tar_at_far.push_back(lower);
  return r;
}

}  // namespace cuface::eval
