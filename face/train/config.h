// Everything a training run is configured by. `cuface train` fills it from --config FILE (JSON)
// and then the flags (flags win); the run folder's config.json holds the resolved values, and
// --resume reads them back, so a resumed run is configured exactly as it started.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace cuface {

struct TrainConfig {
  // The recipe the defaults below were replaced by (face/train/recipe.h): "" or "large" keeps
  // them (the original project's, for MS1M-scale data), "small" suits thousands of images.
  std::string recipe;
  // What to train on
  std::string task = "FR";                    // FR | Gender | Age | multi
  std::vector<std::string> train_sets;        // pack prefixes (cuface pack --out)
  std::vector<std::string> valid_sets;        // pack prefixes for validation (optional)
  std::string out;                            // run folder
  // Model
  std::string arch = "resnet50";
  int input_size = 112;
  std::string init;                           // torchvision-named safetensors for the backbone
  int64_t embedding_size = 512;
  std::string margin = "arcface";             // arcface | cosface | combined
  float margin_s = 64.0f, margin_m = 0.5f;    // CosFace's m defaults to 0.35 when margin_m is not set
  bool margin_m_set = false;
  float margin_m1 = 1.0f, margin_m2 = 0.3f, margin_m3 = 0.2f;
  bool easy_margin = false;
  float sample_rate = 1.0f;                   // Partial FC
  std::vector<int> age_edges;                 // empty: the default 7 bins (layers/softmax_head.h)
  float bn_momentum = 0.1f;
  // Optimisation
  int batch = 128;                            // images per update (= ids_per_batch * imgs_per_id when balanced)
  int ids_per_batch = 0, imgs_per_id = 0;     // class-balanced batches (face/loader/balanced_sampler.h); 0: shuffle
  int accumulate = 1;                         // micro-batches of batch / accumulate per update
  int64_t steps = 0;                          // 0: from epochs
  int64_t epochs = 1;
  double time_budget = 0;                     // seconds of training (0: --steps / --epochs); the LR schedule is laid over it
  double lr = 0.1;
  double lr_fr = 0, lr_gender = 0, lr_age = 0;  // per-task initial LR; 0: --lr
  double momentum = 0.9;
  double wd_backbone = 5e-4, wd_fr = 5e-4, wd_gender = 5e-4, wd_age = 5e-4;
  std::string lr_schedule = "plateau";        // plateau | step | cosine
  int64_t patience = 2000;
  double lr_shrink = 0.1;
  double min_lr = 1e-6;
  std::vector<int64_t> lr_steps;              // step schedule milestones
  int64_t warmup = 0;                         // linear warm-up steps
  float weight_fr = 1, weight_gender = 1, weight_age = 1;  // multi: loss weights
  std::string multi_mode = "sum";             // multi: sum the task losses, or alternate tasks step by step
  bool freeze_backbone = false;
  float embedding_dropout = 0.4f;             // before the embedding FC (the original's 0.4)
  // Several processes (mpirun): --batch is per rank (InsightFace: per GPU), so a step sees
  // world size x batch images.
  bool sync_bn = false;                       // BatchNorm statistics over every rank's rows
  bool shard_classes = false;                 // the FR head's classes split over the ranks
  std::string gradient_wire = "f32";          // f32 | bf16: the format gradients are averaged in
  // Execution
  std::string device = "auto";
  bool deterministic = false;                 // GPU: reproducible cuDNN algorithms only
  std::string precision = "auto";            // auto: bf16 on GPUs with bf16 tensor cores, else fp32 | fp32 | tf32 | bf16
  std::string cuda_graph = "auto";           // auto: the whole training step replays from a CUDA graph | off
  int workers = 2;
  uint64_t seed = 1;
  // Augmentation of each training image (face/loader/augment.h); validation never augments.
  bool flip = true;                           // mirror left-right with probability 1/2
  float scale_jitter = 0;                     // zoom uniform in [1 - j, 1 + j] about the centre
  float shift_jitter = 0;                     // shift uniform in [-j, j] x the side, each axis
  float colour_jitter = 0;                    // brightness, contrast, saturation factors in [1 - j, 1 + j]
  // Logging, validation, checkpoints
  int64_t log_every = 10;
  int64_t valid_every = 1000;                 // 0: only at the end
  bool valid_at_start = false;                // also validate the untrained model (step 0)
  int64_t valid_pairs = 2000;                 // FR: sampled pairs of the validation pack
  int64_t checkpoint_every = 1000;            // 0: only at the end
  int64_t keep_checkpoints = 3;               // older model-/state- files are removed
  bool profile = false;                       // time each kind of layer: profile.txt / profile.csv

  // Numbers as the user wrote them: a float setting of 0.1 is written 0.1, not 0.10000000149011612.
  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& json);  // unknown keys are an error naming them
  void validate() const;                                     // clear errors naming the flag
  double task_lr(const std::string& task_name) const;
};

}  // namespace cuface
