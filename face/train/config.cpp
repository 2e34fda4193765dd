#include "face/train/config.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>

#include "engine/error.h"
#include "layers/softmax_head.h"

namespace cuface {

// One list of every field, used by both directions of the JSON conversion.
#define CUFACE_TRAIN_CONFIG_FIELDS(X)                                                                              \
  X(recipe) X(task) X(train_sets) X(valid_sets) X(out) X(arch) X(input_size) X(init) X(embedding_size) X(margin)   \
  X(margin_s) X(margin_m) X(margin_m_set) X(margin_m1) X(margin_m2) X(margin_m3) X(easy_margin) X(sample_rate)     \
  X(age_edges) X(bn_momentum) X(batch) X(ids_per_batch) X(imgs_per_id) X(accumulate) X(steps) X(epochs) X(lr)      \
  X(time_budget) X(lr_fr) X(lr_gender) X(lr_age) X(momentum) X(wd_backbone) X(wd_fr) X(wd_gender) X(wd_age)        \
  X(lr_schedule) X(patience) X(lr_shrink) X(min_lr) X(lr_steps) X(warmup) X(weight_fr) X(weight_gender)            \
  X(weight_age) X(multi_mode) X(freeze_backbone) X(device) X(deterministic) X(precision) X(cuda_graph) X(workers)  \
  X(embedding_dropout) X(sync_bn) X(shard_classes) X(gradient_wire) X(seed) X(flip) X(scale_jitter)                \
  X(shift_jitter) X(colour_jitter) X(log_every) X(valid_every) X(valid_at_start) X(valid_pairs)                    \
  X(checkpoint_every) X(keep_checkpoints) X(profile)

namespace {

template <class T>
nlohmann::json json_value(const T& value) {
  return value;
}

// The shortest decimal that reads back as the same float, as a double: JSON then shows 0.1 for the
// float nearest 0.1, and reading it back gives that float again.
nlohmann::json json_value(float value) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, value).ptr;
  return std::strtod(std::string(text, end).c_str(), nullptr);
}

}  // namespace

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json json;
#define CUFACE_WRITE(field) json[#field] = json_value(field);
  CUFACE_TRAIN_CONFIG_FIELDS(CUFACE_WRITE)
#undef CUFACE_WRITE
  return json;
}

TrainConfig TrainConfig::from_json(const nlohmann::json& json) {
  CUFACE_CHECK(json.is_object(), "training configuration must be a JSON object");
  TrainConfig config;
  std::set<std::string> known;
#define CUFACE_READ(field)                                                                              \
  known.insert(#field);                                                                                 \
  if (json.contains(#field)) {                                                                          \
    try {                                                                                               \
      json.at(#field).get_to(config.field);                                                             \
    } catch (const nlohmann::json::exception& e) {                                                      \
      throw Error(std::string("configuration key '" #field "': ") + e.what());                          \
    }                                                                                                   \
  }
  CUFACE_TRAIN_CONFIG_FIELDS(CUFACE_READ)
#undef CUFACE_READ
  for (const auto& [key, value] : json.items())
    CUFACE_CHECK(known.count(key), "unknown configuration key '" + key + "'");
  return config;
}

void TrainConfig::validate() const {
  static const std::set<std::string> tasks{"FR", "Gender", "Age", "multi"};
  CUFACE_CHECK(tasks.count(task), "unknown task '" + task + "' (expected FR, Gender, Age or multi)");
  CUFACE_CHECK(!train_sets.empty(), "--train-sets: at least one pack prefix is needed");
  CUFACE_CHECK(!out.empty(), "--out: a run folder is needed");
  CUFACE_CHECK(input_size >= 32 && input_size % 16 == 0, "--input-size must be a multiple of 16 (112 or 224)");
  check_age_edges(age_edges, "--age-edges");
  CUFACE_CHECK(batch >= 2, "--batch must be at least 2 (batch statistics)");
  CUFACE_CHECK((ids_per_batch > 0) == (imgs_per_id > 0), "--ids-per-batch and --imgs-per-id go together");
  CUFACE_CHECK(ids_per_batch >= 0 && imgs_per_id >= 0, "--ids-per-batch and --imgs-per-id must be positive");
  CUFACE_CHECK(ids_per_batch == 0 || int64_t(ids_per_batch) * imgs_per_id == batch,
               "--batch " + std::to_string(batch) + " differs from --ids-per-batch " + std::to_string(ids_per_batch) +
                   " x --imgs-per-id " + std::to_string(imgs_per_id) + " (leave --batch out: it follows)");
  CUFACE_CHECK(accumulate >= 1, "--accumulate must be at least 1");
  CUFACE_CHECK(batch % accumulate == 0, "--batch " + std::to_string(batch) + " is not divisible by --accumulate " +
                                            std::to_string(accumulate) +
                                            " (each micro-batch holds batch / accumulate images)");
  CUFACE_CHECK(batch / accumulate >= 2, "--accumulate " + std::to_string(accumulate) +
                                            " leaves micro-batches of fewer than 2 images (batch statistics)");
  CUFACE_CHECK(multi_mode == "sum" || multi_mode == "alternate", "--multi-mode must be sum or alternate");
  CUFACE_CHECK(recipe.empty() || recipe == "small" || recipe == "large", "--recipe must be small or large");
  CUFACE_CHECK(steps > 0 || epochs > 0 || time_budget > 0, "--steps, --epochs or --time-budget must be positive");
  CUFACE_CHECK(std::isfinite(time_budget) && time_budget >= 0, "--time-budget cannot be negative");
  CUFACE_CHECK(time_budget == 0 || steps == 0,
               "--time-budget and --steps both set the run's length: give one of them");
  CUFACE_CHECK(lr > 0, "--lr must be positive");
  CUFACE_CHECK(momentum >= 0 && momentum < 1, "--momentum must be in [0, 1)");
  CUFACE_CHECK(sample_rate > 0 && sample_rate <= 1, "--sample-rate must be in (0, 1]");
  CUFACE_CHECK(embedding_dropout >= 0 && embedding_dropout < 1, "--embedding-dropout must be in [0, 1)");
  CUFACE_CHECK(gradient_wire == "f32" || gradient_wire == "bf16", "--gradient-wire must be f32 or bf16");
  CUFACE_CHECK(cuda_graph == "auto" || cuda_graph == "off", "--cuda-graph must be auto or off");
  CUFACE_CHECK(lr_schedule == "plateau" || lr_schedule == "step" || lr_schedule == "cosine",
               "--lr-schedule must be plateau, step or cosine");
  CUFACE_CHECK(patience > 0, "--patience must be positive");
  CUFACE_CHECK(lr_shrink > 0 && lr_shrink < 1, "--lr-shrink must be in (0, 1)");
  CUFACE_CHECK(workers >= 1, "--workers must be at least 1");
  CUFACE_CHECK(log_every >= 1, "--log-every must be at least 1");
  CUFACE_CHECK(embedding_size >= 1, "--embedding-size must be at least 1");
  CUFACE_CHECK(margin_s > 0, "--margin-s must be positive");
  CUFACE_CHECK(bn_momentum >= 0 && bn_momentum <= 1, "--bn-momentum must be in [0, 1]");
  CUFACE_CHECK(steps >= 0 && epochs >= 0, "--steps and --epochs cannot be negative");
  CUFACE_CHECK(lr_fr >= 0 && lr_gender >= 0 && lr_age >= 0,
               "--lr-fr, --lr-gender and --lr-age cannot be negative (0: --lr)");
  CUFACE_CHECK(wd_backbone >= 0 && wd_fr >= 0 && wd_gender >= 0 && wd_age >= 0,
               "weight decays (--wd-*) cannot be negative");
  CUFACE_CHECK(min_lr >= 0, "--min-lr cannot be negative");
  for (size_t i = 0; i < lr_steps.size(); ++i)
    CUFACE_CHECK(lr_steps[i] > (i ? lr_steps[i - 1] : 0), "--lr-steps must be increasing positive steps");
  CUFACE_CHECK(warmup >= 0, "--warmup cannot be negative");
  CUFACE_CHECK(weight_fr >= 0 && weight_gender >= 0 && weight_age >= 0, "--weight-* cannot be negative");
  CUFACE_CHECK(valid_every >= 0 && checkpoint_every >= 0,
               "--valid-every and --checkpoint-every cannot be negative (0: at the end)");
  CUFACE_CHECK(valid_pairs >= 20, "--valid-pairs must be at least 20");
  CUFACE_CHECK(scale_jitter >= 0 && scale_jitter < 1, "--scale-jitter must be in [0, 1)");
  CUFACE_CHECK(shift_jitter >= 0 && shift_jitter <= 0.5f, "--shift-jitter must be in [0, 0.5]");
  CUFACE_CHECK(colour_jitter >= 0 && colour_jitter <= 1, "--colour-jitter must be in [0, 1]");
  CUFACE_CHECK(keep_checkpoints >= 1, "--keep-checkpoints must be at least 1");
}

double TrainConfig::task_lr(const std::string& task_name) const {
  const double specific = task_name == "FR" ? lr_fr : task_name == "Gender" ? lr_gender : task_name == "Age" ? lr_age : 0;
  return specific > 0 ? specific : lr;
}

}  // namespace cuface
