#include "face/train/validation.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include "face/eval/attributes.h"
#include "face/eval/metrics.h"
#include "face/eval/pair_sampler.h"
#include "face/eval/verification.h"
#include "face/loader/loader.h"
#include "face/loader/upload.h"

namespace cuface {

namespace {

// Runs `per_batch(device_batch, host_batch)` over every record of the packs exactly once, in the
// packs' order (so rows are the records' indices).
template <class F>
void for_each_batch(Context& ctx, const ValidationOptions& options, F per_batch) {
  const int64_t records = PackSet(options.packs).size();
  LoaderOptions loader_options;
  loader_options.sampler = [records](int64_t) {
    std::vector<int64_t> in_order(static_cast<size_t>(records));
    std::iota(in_order.begin(), in_order.end(), int64_t(0));
    return in_order;
  };
  loader_options.samples_per_epoch = records;
  loader_options.packs = options.packs;
  loader_options.batch_size = options.batch;
  loader_options.workers = options.workers;
  loader_options.image_size = options.image_size;
  loader_options.augment.flip = false;
  loader_options.seed = options.seed;
  loader_options.drop_last = false;
  Loader loader(loader_options);
  const int64_t steps = loader.steps_per_epoch();
  for (int64_t i = 0; i < steps; ++i) {
    Batch batch = loader.next();
    per_batch(to_device_normalised(ctx, batch), batch);
  }
}

}  // namespace

PackEmbeddings embed_pack(Context& ctx, FaceModel& model, const ValidationOptions& options) {
  std::vector<float> rows;
  PackEmbeddings out;
  int64_t dim = 0;
  for_each_batch(ctx, options, [&](const DeviceBatch& input, const Batch& batch) {
    Tensor embedding = model.embed(ctx, input.images).to(Device::CPU);
    dim = embedding.size(1);
    rows.insert(rows.end(), embedding.data<float>(), embedding.data<float>() + embedding.numel());
    const int32_t* ids = batch.identity.data<int32_t>();
    out.identity.insert(out.identity.end(), ids, ids + batch.size());
  });
  out.matrix = Tensor::empty({int64_t(out.identity.size()), dim});
  std::copy(rows.begin(), rows.end(), out.matrix.data<float>());
  return out;
}

namespace {

ValidationResult validate_fr(Context& ctx, FaceModel& model, const ValidationOptions& options) {
  const PackEmbeddings embedded = embed_pack(ctx, model, options);
  const int64_t dim = embedded.matrix.size(1);
  const float* rows = embedded.matrix.data<float>();
  // Pairs among the images of known identity: an unknown one is neither the same person as another
  // unknown one nor surely a different person.
  std::vector<int64_t> known_rows;
  std::vector<int> identity;
  for (size_t i = 0; i < embedded.identity.size(); ++i) {
    if (embedded.identity[i] < 0) continue;
    known_rows.push_back(int64_t(i));
    identity.push_back(embedded.identity[i]);
  }
  eval::SampledPairs sampled =
      eval::sample_pairs(identity, validation_pair_count(identity, options.pairs), options.seed);
  for (std::array<int64_t, 2>& pair : sampled.rows) pair = {known_rows[size_t(pair[0])], known_rows[size_t(pair[1])]};
  eval::PairEmbeddings pairs;
  pairs.matrix = embedded.matrix;
  pairs.rows = sampled.rows;
  pairs.same = sampled.same;
  eval::VerificationResult v = eval::evaluate_verification(pairs, 10);

  // Mean Euclidean distances of normalised embeddings, as the original printed them.
  double same_sum = 0, different_sum = 0;
  for (size_t i = 0; i < pairs.rows.size(); ++i) {
    const float* a = rows + pairs.rows[i][0] * dim;
    const float* b = rows + pairs.rows[i][1] * dim;
    double aa = 0, bb = 0, ab = 0;
    for (int64_t k = 0; k < dim; ++k) aa += double(a[k]) * a[k], bb += double(b[k]) * b[k], ab += double(a[k]) * b[k];
    const double distance = std::sqrt(std::max(0.0, 2.0 - 2.0 * ab / std::sqrt(aa * bb)));
    (pairs.same[i] ? same_sum : different_sum) += distance;
  }
  ValidationResult r;
  r.task = Task::FR;
  r.score = v.gap;
  r.score_name = "gap";
  r.figures = {{"same_distance", same_sum / double(v.same_pairs)},
               {"different_distance", different_sum / double(v.different_pairs)},
               {"gap", v.gap},
               {"best_accuracy", v.best.accuracy},
               {"best_threshold", v.best.threshold},
               {"same_accuracy", v.best.same_accuracy},
               {"different_accuracy", v.best.different_accuracy},
               {"accuracy_mean", v.kfold.accuracy_mean},
               {"accuracy_std", v.kfold.accuracy_std},
               {"auc", v.auc},
               {"pairs", v.pairs}};
  // Each figure says what it is: the original's accuracy takes its threshold from these very pairs (an
  // optimistic figure), the 10-fold one applies to each fold the threshold chosen on the others.
  std::ostringstream line;
  line.precision(4);
  line << v.pairs << " pairs: mean distance same " << r.figures["same_distance"].get<double>() << ", different "
       << r.figures["different_distance"].get<double>() << ", gap " << v.gap
       << "; best balanced accuracy " << v.best.accuracy << " at threshold " << v.best.threshold
       << " (the original's grid 0.4..1.8, chosen on these pairs; same " << v.best.same_accuracy << ", different "
       << v.best.different_accuracy << "); 10-fold accuracy " << v.kfold.accuracy_mean << " +- "
       << v.kfold.accuracy_std << " (thresholds chosen on the other folds)";
  r.summary = line.str();
  return r;
}

ValidationResult validate_attribute(Context& ctx, FaceModel& model, Task task, const ValidationOptions& options) {
  const std::vector<int>& edges = options.age_edges.empty() ? default_age_edges() : options.age_edges;
  std::vector<float> scores;
  std::vector<int> truth, predicted;
  int classes = 0;
  for_each_batch(ctx, options, [&](const DeviceBatch& input, const Batch& batch) {
    Tensor logits = model.classify(ctx, task, input.images).to(Device::CPU);
    classes = int(logits.size(1));
    const int32_t* labels = (task == Task::Gender ? batch.gender : batch.age).data<int32_t>();
    for (int64_t i = 0; i < batch.size(); ++i) {
      const int label = task == Task::Age ? age_to_bin(labels[i], edges) : labels[i];
      if (label < 0) continue;  // unlabelled record
      const float* row = logits.data<float>() + i * classes;
      scores.insert(scores.end(), row, row + classes);
      truth.push_back(label);
      predicted.push_back(int(std::max_element(row, row + classes) - row));
    }
  });
  CUFACE_CHECK(!truth.empty(), std::string("validation set has no ") + task_name(task) + " labels");
  eval::ConfusionMatrix matrix = eval::confusion_matrix(truth, predicted, classes);
  ValidationResult r;
  r.task = task;
  r.score = matrix.average_accuracy();
  r.score_name = "average accuracy";
  r.figures = {{"average_accuracy", matrix.average_accuracy()},
               {"accuracy", matrix.overall_accuracy()},
               {"samples", int64_t(truth.size())}};
  // Top-n accuracy only where n < classes: with two genders every image is in the top 2.
  if (classes > 2) r.figures["top2_accuracy"] = eval::top_n_accuracy(scores, classes, truth, 2);
  if (classes > 3) r.figures["top3_accuracy"] = eval::top_n_accuracy(scores, classes, truth, 3);
  if (task == Task::Age) r.figures["within_one_accuracy"] = eval::within_one_accuracy(truth, predicted);
  // The confusion matrix too, one figure per cell: confusion_TRUTH_PREDICTED (counts).
  for (int t = 0; t < classes; ++t)
    for (int p = 0; p < classes; ++p)
      r.figures["confusion_" + std::to_string(t) + "_" + std::to_string(p)] = matrix.at(t, p);
  std::ostringstream line;
  line.precision(4);
  line << truth.size() << " images: average accuracy " << matrix.average_accuracy() << " (mean over classes), "
       << "accuracy " << matrix.overall_accuracy();
  if (classes > 2) line << ", top-2 " << r.figures["top2_accuracy"].get<double>();
  if (classes > 3) line << ", top-3 " << r.figures["top3_accuracy"].get<double>();
  r.summary = line.str();
  std::vector<std::string> names;
  for (int c = 0; c < classes; ++c)
    names.push_back(task == Task::Gender ? (c == 0 ? "male" : "female") : "bin" + std::to_string(c));
  r.details = eval::format_confusion(matrix, names);
  return r;
}

}  // namespace

int64_t validation_pair_count(const std::vector<int>& identity, int64_t requested) {
  std::map<int, int64_t> images_of;
  for (int id : identity)
    if (id >= 0) ++images_of[id];
  int64_t same_available = 0;
  for (const auto& [id, n] : images_of) same_available += n * (n - 1) / 2;
  const int64_t pair_count = std::min(requested, same_available / 2 * 2);
  CUFACE_CHECK(pair_count >= 20 && images_of.size() >= 2,
               "--valid-sets: FR validation needs identity labels, at least two identities with several images "
               "each; these packs offer " + std::to_string(images_of.size()) + " identities and " +
                   std::to_string(same_available) + " same-person pairs (20 or more are needed)");
  return pair_count;
}

ValidationResult validate(Context& ctx, FaceModel& model, Task task, const ValidationOptions& options) {
  CUFACE_CHECK(!options.packs.empty(), "validation needs --valid-sets");
  return task == Task::FR ? validate_fr(ctx, model, options) : validate_attribute(ctx, model, task, options);
}

}  // namespace cuface
