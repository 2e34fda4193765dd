#include "face/model/face_model.h"

#include <algorithm>
#include <cctype>

#include "kernels/elementwise.h"
#include "layers/dropout.h"
#include "layers/linear.h"

namespace cuface {

Task parse_task(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (lower == "fr") return Task::FR;
  if (lower == "gender") return Task::Gender;
  if (lower == "age") return Task::Age;
  throw Error("unknown task '" + name + "' (expected FR, Gender or Age)");
}

const char* task_name(Task task) {
  switch (task) {
    case Task::FR: return "FR";
    case Task::Gender: return "Gender";
    case Task::Age: return "Age";
  }
  return "unknown";
}

// dropout -> [FC -> BN + ReLU] per hidden width: the original's gender/age branch before its classifier.
static int64_t build_hidden(Sequential& hidden, int64_t in, const std::vector<int64_t>& widths, float dropout,
                            float bn_momentum, SeedSequence& seeds) {
  hidden.emplace<Dropout>("0", dropout, seeds.next());
  int index = 1;
  for (int64_t width : widths) {
    hidden.emplace<Linear>(std::to_string(index++), in, width, true, seeds.next());
    BatchNormOptions bn;
    bn.momentum = bn_momentum;
    bn.relu = true;
    hidden.emplace<BatchNorm>(std::to_string(index++), width, bn);
    in = width;
  }
  return in;
}

FaceModel::FaceModel(const FaceModelOptions& options) : options_(options) {
  ResNetSpec spec = resnet_spec(options.arch);
  spec.bn_momentum = options.bn_momentum;
  backbone_ = std::make_unique<ResNet>(spec, options.seed);
  SeedSequence seeds(options.seed ^ 0x5eedf00dull);
  const int64_t features = backbone_->features();

  fr_.hidden_name = "embedding";
  fr_.head_name = "fr";
  fr_.hidden.emplace<Dropout>("0", options.embedding_dropout, seeds.next());
  fr_.hidden.emplace<Linear>("1", features, options.embedding_size, true, seeds.next());
  BatchNormOptions embedding_bn;
  embedding_bn.momentum = options.bn_momentum;
  embedding_bn.fixed_scale = true;
  fr_.hidden.emplace<BatchNorm>("2", options.embedding_size, embedding_bn);
  if (options.identities > 0) {
    MarginHeadOptions margin = options.margin;
    margin.seed = seeds.next();
    if (options.shard_classes)
      fr_.head = std::make_unique<ShardedMarginHead>(*options.shard_classes, options.identities,
                                                     options.embedding_size, margin);
    else
      fr_.head = std::make_unique<MarginHead>(options.identities, options.embedding_size, margin);
  }

  SoftmaxHeadOptions softmax;
  softmax.label_smoothing = options.label_smoothing;
  gender_.hidden_name = "gender.hidden";
  gender_.head_name = "gender.head";
  if (options.gender) {
    int64_t width = build_hidden(gender_.hidden, features, options.gender_hidden, options.head_dropout,
                                 options.bn_momentum, seeds);
    softmax.seed = seeds.next();
    gender_.head = std::make_unique<SoftmaxHead>(2, width, softmax);
  }
  age_.hidden_name = "age.hidden";
  age_.head_name = "age.head";
  if (options.age_classes > 0) {
    int64_t width = build_hidden(age_.hidden, features, options.age_hidden, options.head_dropout,
                                 options.bn_momentum, seeds);
    softmax.seed = seeds.next();
    age_.head = std::make_unique<SoftmaxHead>(options.age_classes, width, softmax);
  }
}

FaceModel::Branch& FaceModel::branch(Task task) {
  switch (task) {
    case Task::FR: return fr_;
    case Task::Gender: return gender_;
    case Task::Age: return age_;
  }
  throw Error("unknown task");
}

bool FaceModel::has_head(Task task) const {
  return const_cast<FaceModel*>(this)->branch(task).head != nullptr;
}

LossHead& FaceModel::head(Task task) {
  Branch& b = branch(task);
  CUFACE_CHECK(b.head, std::string("the model has no ") + task_name(task) + " head");
  return *b.head;
}

Tensor FaceModel::pooled_features(Context& ctx, const Tensor& images) {
  set_training(false);
  return cast_to(ctx, backbone_->forward(ctx, images), DType::F32);  // see train_step
}

Tensor FaceModel::embed(Context& ctx, const Tensor& images) {
  return fr_.hidden.forward(ctx, pooled_features(ctx, images));
}

Tensor FaceModel::classify(Context& ctx, Task task, const Tensor& images) {
  Branch& b = branch(task);
  CUFACE_CHECK(b.head && task != Task::FR, std::string("the model has no ") + task_name(task) + " classifier");
  return b.head->forward(ctx, b.hidden.forward(ctx, pooled_features(ctx, images)));
}

std::vector<HeadStats> FaceModel::train_step(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks,
                                             bool train_backbone, bool fetch_stats) {
  queue_train_step(ctx, images, tasks, train_backbone, fetch_stats);
  if (!fetch_stats) return {};
  // Each read from the copy queued right after its head's forward: the host waits for the forward
  // only, and the GPU runs the backward queued meanwhile, so the step never drains the stream (the
  // caller's NaN check still comes before the update).
  return wait_stats(tasks);
}

std::vector<HeadStats> FaceModel::wait_stats(const std::vector<TaskLabels>& tasks) {
  std::vector<HeadStats> stats;
  for (const TaskLabels& t : tasks) stats.push_back(LossHead::decode_stats(branch(t.task).stats_copy.wait()));
  return stats;
}

void FaceModel::queue_train_step(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks,
                                 bool train_backbone, bool copy_stats) {
  const Tensor features = forward_backbone(ctx, images, train_backbone);
  const Tensor features_grad = train_branches(ctx, features, tasks, train_backbone, copy_stats);
  if (train_backbone) backward_backbone(ctx, features_grad, images.dtype());
}

Tensor FaceModel::forward_backbone(Context& ctx, const Tensor& images, bool train_backbone) {
  set_training(true);
  backbone_->set_training(train_backbone);
  // The branches and heads take f32 features (the heads' normalisation and softmax accept nothing
  // else): a bf16 backbone's pooled features are cast once here, and their gradient cast back.
  return cast_to(ctx, backbone_->forward(ctx, images), DType::F32);
}

Tensor FaceModel::train_branches(Context& ctx, const Tensor& features, const std::vector<TaskLabels>& tasks,
                                 bool train_backbone, bool copy_stats) {
  CUFACE_CHECK(!tasks.empty(), "train_step: no task given");
  Tensor features_grad;
  for (const TaskLabels& t : tasks) {
    Branch& b = branch(t.task);
    CUFACE_CHECK(b.head, std::string("the model has no ") + task_name(t.task) + " head");
    const Tensor hidden = b.hidden.forward(ctx, features);
    Tensor head_grad;
    {
      ProfileScope scope(ctx, b.head->type(), Pass::Forward);  // no rate: its work is mostly W, not its input
      b.head->forward(ctx, hidden, t.labels);
    }
    if (copy_stats) b.stats_copy.start(ctx, b.head->stats_tensor());
    {
      ProfileScope scope(ctx, b.head->type(), Pass::Backward);
      head_grad = b.head->backward(ctx);
    }
    Tensor d = b.hidden.backward(ctx, head_grad);
    if (!train_backbone) continue;
    if (t.weight != 1.0f) scale(ctx, t.weight, d);
    if (features_grad.defined())
      add(ctx, features_grad, d, features_grad);
    else
      features_grad = d;
  }
  return features_grad;
}

void FaceModel::backward_backbone(Context& ctx, const Tensor& features_grad, DType images_dtype) {
  backbone_->backward(ctx, cast_to(ctx, features_grad, images_dtype));
}

void FaceModel::set_step(uint64_t step, const Tensor& counter) {
  for (Branch* b : {&fr_, &gender_, &age_}) {
    // Each branch starts with its Dropout.
    if (b->hidden.size() > 0) static_cast<Dropout&>(b->hidden[0]).set_step(step, counter);
    if (auto* margin = dynamic_cast<MarginHead*>(b->head.get())) margin->set_sampling_step(step, counter);
    if (auto* sharded = dynamic_cast<ShardedMarginHead*>(b->head.get())) sharded->set_sampling_step(step, counter);
  }
}

Tensor FaceModel::backward(Context&, const Tensor&) {
  throw Error("FaceModel: use train_step (it runs forward and backward of the chosen tasks)");
}

void FaceModel::collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  backbone_->collect_parameters(prefix, out);
  for (Branch* b : {&fr_, &gender_, &age_}) {
    if (b != &fr_ && !b->head) continue;  // the embedding exists even without an FR head
    b->hidden.collect_parameters(join_name(prefix, b->hidden_name), out);
    if (b->head) b->head->collect_parameters(join_name(prefix, b->head_name), out);
  }
}

void FaceModel::set_training(bool training) {
  Layer::set_training(training);
  backbone_->set_training(training);
  for (Branch* b : {&fr_, &gender_, &age_}) {
    b->hidden.set_training(training);
    if (b->head) b->head->set_training(training);
  }
}

void FaceModel::visit(const std::function<void(Layer&)>& f) {
  f(*this);
  backbone_->visit(f);
  for (Branch* b : {&fr_, &gender_, &age_}) {
    b->hidden.visit(f);
    if (b->head) b->head->visit(f);
  }
}

void FaceModel::set_frozen(bool frozen) {
  Layer::set_frozen(frozen);
  backbone_->set_frozen(frozen);
  for (Branch* b : {&fr_, &gender_, &age_}) {
    b->hidden.set_frozen(frozen);
    if (b->head) b->head->set_frozen(frozen);
  }
}

}  // namespace cuface
