// Face verification from embeddings: pair the rows, L2-normalise, and compute every figure cuface
// reports (face/eval/metrics.h): the LFW k-fold accuracy, the original project's best balanced
// accuracy and gap, TAR@FAR and the ROC with its AUC.
#pragma once
#include <array>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "face/eval/metrics.h"
#include "face/eval/npy.h"
#include "face/eval/pairs.h"

namespace cuface::eval {

// Embeddings and, per pair, the rows of its two images.
struct PairEmbeddings {
  Tensor matrix;  // [images, dim] f32, CPU
  std::vector<std::array<int64_t, 2>> rows;
  std::vector<uint8_t> same;
};

// Computes one embedding row per image path (the seam where a model plugs in).
using ImageEmbedder = std::function<Tensor(const std::vector<std::filesystem::path>& images)>;

// Embeds each distinct image the pairs name, once, after checking that every image exists under
// `root` (errors name the pairs file's line).
PairEmbeddings embed_pairs(const PairList& pairs, const std::filesystem::path& root, const ImageEmbedder& embed);

// Looks each pair's images up in precomputed embeddings whose paths are relative to `root`, under it,
// or absolute; an image missing from `table_name` is an error naming the pairs file's line.
PairEmbeddings lookup_pairs(const PairList& pairs, const std::filesystem::path& root, Embeddings embeddings,
                            const std::string& table_name);

// FAR targets always reported (marked unsupported when there are too few different pairs), and the
// lower ones reported only where the number of different pairs supports them.
inline constexpr std::array<double, 3> kReportedFars{1e-1, 1e-2, 1e-3};
inline constexpr std::array<double, 3> kLowerFars{1e-4, 1e-5, 1e-6};

struct VerificationResult {
  int64_t pairs = 0, same_pairs = 0, different_pairs = 0;
  // Squared Euclidean distance of normalised embeddings, InsightFace's thresholds 0..3.99.
  KFoldAccuracy kfold;
  int folds = 0;
  // Euclidean distance of normalised embeddings, the original's thresholds 0.4..1.8.
  BalancedAccuracy best;
  double gap = 0;
  // Cosine similarity of normalised embeddings.
  std::vector<TarAtFar> tar_at_far;
  Roc roc;
  double auc = 0;
};

// `folds` >= 2 and at most the number of pairs.
VerificationResult evaluate_verification(const PairEmbeddings& input, int folds);

}  // namespace cuface::eval
