// Validation during training, as the original project printed it: for FR, verification on pairs
// sampled from an identity-labelled pack (mean same-person and different-person distances, the gap,
// the original's balanced accuracy at the best threshold of its grid, and the LFW-style 10-fold
// accuracy); for gender and age, classification of a labelled pack (average per-class accuracy,
// overall accuracy, for age top-2, top-3 and within-one-bin accuracy, the confusion matrix, also as
// figures confusion_TRUTH_PREDICTED). The trainer adds the steps without progress (since the best
// validation) to the first task's figures.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "face/model/face_model.h"

namespace cuface {

struct ValidationOptions {
  std::vector<std::string> packs;
  int image_size = 112;
  int batch = 64;
  int workers = 2;
  int64_t pairs = 2000;        // FR: sampled pairs (half same, half different)
  uint64_t seed = 1;           // the same pairs at every validation of a run
  std::vector<int> age_edges;  // empty: the default bins
};

struct ValidationResult {
  Task task;
  double score = 0;            // what the best checkpoint is chosen by: FR gap, else average accuracy
  std::string score_name;      // "gap" or "average accuracy", as the summary names it
  nlohmann::json figures;      // every figure, flat (for valid.csv and the log)
  std::string summary;         // one line
  std::string details;         // multi-line extras (the confusion matrix), may be empty
};

// The embedding of every image of the packs (evaluation mode, no augmentation) and its identity label:
// what FR validation and `cuface eval-fr --pack` sample pairs from.
struct PackEmbeddings {
  Tensor matrix;              // f32 [images, dim], CPU
  std::vector<int> identity;  // per row, -1 unknown
};
PackEmbeddings embed_pack(Context& ctx, FaceModel& model, const ValidationOptions& options);

// Embeds or classifies every image of the packs once (evaluation mode, no augmentation).
ValidationResult validate(Context& ctx, FaceModel& model, Task task, const ValidationOptions& options);

// The pairs an FR validation samples from images of these identities (-1, unknown, in no pair): the
// requested number, or fewer where the identities offer fewer distinct same-person pairs (the sampler
// takes at most half of them). An error naming --valid-sets when that leaves fewer than 20 pairs or
// fewer than two identities, so that the trainer can check a validation set before training.
int64_t validation_pair_count(const std::vector<int>& identity, int64_t requested);

}  // namespace cuface
