// FaceModel: the multi-task network of the original project. One ResNet backbone gives pooled
// features; three task branches share it:
//
//   images -> ResNet -> features [N, F]
//     FR:     dropout 0.4 -> FC F->512 (+bias) -> BN1d (scale fixed to 1) = embedding -> MarginHead
//     gender: dropout 0.5 -> [FC 512 -> BN -> ReLU] -> SoftmaxHead 2     (label smoothing 0.1)
//     age:    dropout 0.5 -> [FC 512 -> BN -> ReLU] x 2 -> SoftmaxHead 7 (label smoothing 0.1)
//
// The embedding comes from the pooled features (as the original, which pooled before its FC), not
// from the flattened 7x7 map InsightFace uses: it keeps the FC small (2048 x 512 instead of
// 100352 x 512) and the model independent of the input size. The final BN1d with its scale fixed
// is InsightFace's; the margin head normalises the embedding anyway.
//
// Parameter names: the backbone's are torchvision's ("conv1.weight", "layer1.0.bn1.bias", ...), the
// branches' are "embedding.*", "fr.weight", "gender.hidden.*", "gender.head.*", "age.hidden.*",
// "age.head.*".
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/host_copy.h"
#include "face/model/resnet.h"
#include "layers/margin_head.h"
#include "layers/sharded_margin_head.h"
#include "layers/softmax_head.h"

namespace cuface {

enum class Task { FR, Gender, Age };
Task parse_task(const std::string& name);  // "FR" | "Gender" | "Age" (any case)
const char* task_name(Task task);

struct FaceModelOptions {
  std::string arch = "resnet50";
  float bn_momentum = 0.1f;              // PyTorch convention
  int64_t embedding_size = 512;
  float embedding_dropout = 0.4f;
  int64_t identities = 0;                // FR classes; 0 builds no FR head (embedding still exists)
  MarginHeadOptions margin;
  Communicator* shard_classes = nullptr;  // FR head split over these ranks (ShardedMarginHead)
  bool gender = false;
  std::vector<int64_t> gender_hidden{512};
  int64_t age_classes = 0;               // 0 builds no age head
  std::vector<int64_t> age_hidden{512, 512};
  float head_dropout = 0.5f;
  float label_smoothing = 0.1f;          // gender and age targets: 0.9 on the true class
  uint64_t seed = 0;
};

// One task's labels in a training step and the weight of its loss.
struct TaskLabels {
  Task task;
  Tensor labels;  // i32 [N] on the model's device, -1 = no label
  float weight = 1.0f;
};

class FaceModel : public Layer {
 public:
  explicit FaceModel(const FaceModelOptions& options);
  const char* type() const override { return "FaceModel"; }
  const FaceModelOptions& options() const { return options_; }

  ResNet& backbone() { return *backbone_; }
  bool has_head(Task task) const;
  LossHead& head(Task task);

  // Images may be f32, or bf16 on a GPU (the backbone then runs in bf16); everything after the
  // backbone's pooling, and so every output below, is f32.
  // The 512-d embedding of normalised images (evaluation mode: no dropout, running BN statistics).
  Tensor embed(Context& ctx, const Tensor& images);
  // The backbone's pooled features (evaluation mode).
  Tensor pooled_features(Context& ctx, const Tensor& images);
  // Class scores of the gender or age head (evaluation mode), [N, classes].
  Tensor classify(Context& ctx, Task task, const Tensor& images);

  // One training forward and backward: the backbone once, then each task's branch and head; the
  // branches' input gradients, scaled by their weights, add up into the backbone's backward. The
  // weight scales what a task sends into the shared backbone; the task's own branch is trained by
  // its own loss alone (scaling it would only rescale that branch's learning rate). With
  // train_backbone false the backbone runs in evaluation mode and is not back-propagated at all.
  // Returns each task's statistics (copied to the host only when `fetch_stats`).
  std::vector<HeadStats> train_step(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks,
                                    bool train_backbone, bool fetch_stats);
  // train_step in two halves, for a step captured as a CUDA graph (engine/cuda_graph.h): the first
  // queues the work (with each head's statistics copy when `copy_stats`) and waits for nothing, so
  // it can be captured; the second waits for the copies of the last queued (or replayed) step.
  void queue_train_step(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks,
                        bool train_backbone, bool copy_stats);
  std::vector<HeadStats> wait_stats(const std::vector<TaskLabels>& tasks);

  // The training step the random draws of the next train_step belong to: every Dropout's mask and
  // Partial FC's sampling are pure functions of (seed, step), so a resumed run repeats them exactly.
  // With a counter (i32 [1] on the model's device), the kernels add the number it holds when they run:
  // a step captured as a CUDA graph after set_step(0, counter) draws the step written there before
  // each replay (kernels/random_step.h).
  void set_step(uint64_t step, const Tensor& counter = {});

  Tensor forward(Context& ctx, const Tensor& images) override { return embed(ctx, images); }
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) override;
  void set_training(bool training) override;
  void set_frozen(bool frozen) override;
  void visit(const std::function<void(Layer&)>& f) override;
  bool is_container() const override { return true; }

 private:
  struct Branch {
    Sequential hidden;                   // dropout, [FC, BN(+ReLU)] ... (the embedding for FR)
    std::unique_ptr<LossHead> head;      // MarginHead or SoftmaxHead; null when the task is off
    std::string hidden_name, head_name;  // parameter prefixes: "embedding" and "fr", "gender.hidden" ...
    HostCopy stats_copy;                 // the head's statistics on their way to the host
  };
  Branch& branch(Task task);
  // queue_train_step's three parts: the backbone's forward (its pooled features as f32), the task
  // branches and heads forward and backward (the sum of their gradients with respect to the features,
  // undefined when the backbone is not trained), the backbone's backward.
  Tensor forward_backbone(Context& ctx, const Tensor& images, bool train_backbone);
  Tensor train_branches(Context& ctx, const Tensor& features, const std::vector<TaskLabels>& tasks,
                        bool train_backbone, bool copy_stats);
  void backward_backbone(Context& ctx, const Tensor& features_grad, DType images_dtype);

  FaceModelOptions options_;
  std::unique_ptr<ResNet> backbone_;
  Branch fr_, gender_, age_;
};


}  // namespace cuface
