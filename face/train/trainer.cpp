#include "face/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/communicator.h"
#include "engine/grad_buckets.h"
#include "engine/lr_schedule.h"
#include "engine/profiler.h"
#include "engine/safetensors.h"
#include "face/cli/progress.h"
#include "face/loader/balanced_sampler.h"
#include "face/loader/loader.h"
#include "face/loader/upload.h"
#include "face/model/face_model.h"
#include "face/train/accumulate.h"
#include "face/train/checkpoint.h"
#include "face/train/step_graph.h"
#include "face/train/optimizer.h"
#include "face/train/run_folder.h"
#include "face/train/validation.h"
#include "layers/batch_norm.h"

namespace cuface {

using cli::format_duration;

namespace fs = std::filesystem;

std::atomic<int>& stop_signal() {
  static std::atomic<int> signal{0};
  return signal;
}

namespace {

// The first Ctrl-C (or SIGTERM) asks for a checkpoint at the end of the step; the default action comes
// back, so a second one stops the program at once (the checkpoint before stays).
void on_stop_signal(int signal) {
  stop_signal() = signal;
  std::signal(signal, SIG_DFL);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  CUFACE_CHECK(in.good(), "cannot read '" + path.string() + "'");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

nlohmann::json read_json(const fs::path& path) {
  try {
    return nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path.string() + "' is not valid JSON: " + e.what());
  }
}

// ---- configuration to objects ----------------------------------------------------------------------

std::vector<Task> tasks_of(const TrainConfig& config) {
  if (config.task == "multi") return {Task::FR, Task::Gender, Task::Age};
  return {parse_task(config.task)};
}

bool has_task(const std::vector<Task>& tasks, Task task) {
  return std::find(tasks.begin(), tasks.end(), task) != tasks.end();
}

// Records of the packs with a gender ("gender_counts") or age ("age_counts") label, as their
// sidecars count them; -1 when a pack's sidecar does not say (a lone shard).
int64_t labelled_records(const PackSet& packs, const char* key) {
  int64_t labelled = 0;
  for (const auto& pack : packs.packs()) {
    const nlohmann::json& metadata = pack->metadata();
    if (!metadata.contains(key) || !metadata[key].is_object()) return -1;
    for (const auto& [label, count] : metadata[key].items())
      if (label != "unknown") labelled += count.get<int64_t>();
  }
  return labelled;
}

const std::vector<int>& age_edges(const TrainConfig& config) {
  return config.age_edges.empty() ? default_age_edges() : config.age_edges;
}

ValidationOptions validation_options(const TrainConfig& config) {
  ValidationOptions options;
  options.packs = config.valid_sets;
  options.image_size = config.input_size;
  options.batch = std::min(config.batch, 128);
  options.workers = config.workers;
  options.pairs = config.valid_pairs;
  options.seed = config.seed;
  options.age_edges = config.age_edges;
  return options;
}

PackSet open_packs(const std::vector<std::string>& names, const char* flag) {
  try {
    return PackSet(names);
  } catch (const Error& e) {
    throw Error(std::string(flag) + ": " + e.what());
  }
}

// Everything the run reads, checked before anything is written or trained: a validation set without
// the labels a task needs failed at the first validation, 1,000 steps in with the defaults.
void check_data(const TrainConfig& config) {
  const std::vector<Task> tasks = tasks_of(config);
  const PackSet train = open_packs(config.train_sets, "--train-sets");
  CUFACE_CHECK(!has_task(tasks, Task::FR) || train.classes() >= 2,
               "--train-sets: FR training needs identity labels (the packs have " + std::to_string(train.classes()) +
                   " classes)");
  // A head without labels would train on nothing and print loss 0 at every step.
  for (const Task task : {Task::Gender, Task::Age})
    CUFACE_CHECK(!has_task(tasks, task) ||
                     labelled_records(train, task == Task::Gender ? "gender_counts" : "age_counts") != 0,
                 std::string("--train-sets: ") + task_name(task) + " training needs " +
                     (task == Task::Gender ? "gender" : "age") +
                     " labels and no record of the packs has one (pack with --format utkface, a list file with "
                     "gender and age, or --labels gender|age)");
  if (config.valid_sets.empty()) return;
  // Validation sets are small: their records' labels are counted one by one (lone shards included).
  const PackSet valid = open_packs(config.valid_sets, "--valid-sets");
  std::vector<int> identity;
  int64_t genders = 0, ages = 0;
  for (int64_t i = 0; i < valid.size(); ++i) {
    const RecordLabels labels = valid.record(i).labels;
    identity.push_back(labels.identity);
    genders += labels.gender >= 0;
    ages += labels.age >= 0;
  }
  for (const Task task : tasks) {
    if (task == Task::FR) validation_pair_count(identity, config.valid_pairs);
    CUFACE_CHECK(task != Task::Gender || genders > 0,
                 "--valid-sets: validating the gender head needs gender labels and no record of the packs has one");
    CUFACE_CHECK(task != Task::Age || ages > 0,
                 "--valid-sets: validating the age head needs age labels and no record of the packs has one");
  }
}

FaceModelOptions model_options(const TrainConfig& config, const std::vector<Task>& tasks, int64_t identities) {
  FaceModelOptions options;
  options.arch = config.arch;
  options.bn_momentum = config.bn_momentum;
  options.embedding_size = config.embedding_size;
  options.seed = config.seed;
  if (has_task(tasks, Task::FR)) {
    options.identities = identities;
    MarginType type = parse_margin_type(config.margin);
    options.margin.margin = default_margin_params(type);
    options.margin.margin.s = config.margin_s;
    if (config.margin_m_set) options.margin.margin.m = config.margin_m;
    options.margin.margin.m1 = config.margin_m1;
    options.margin.margin.m2 = config.margin_m2;
    options.margin.margin.m3 = config.margin_m3;
    options.margin.margin.easy_margin = config.easy_margin;
    options.margin.sample_rate = config.sample_rate;
  }
  options.embedding_dropout = config.embedding_dropout;
  options.gender = has_task(tasks, Task::Gender);
  options.age_classes = has_task(tasks, Task::Age) ? int64_t(age_edges(config).size()) + 1 : 0;
  return options;
}

std::unique_ptr<LrSchedule> make_schedule(const TrainConfig& config, double lr, int64_t total_steps) {
  if (config.lr_schedule == "step") return std::make_unique<StepSchedule>(lr, config.lr_steps, config.lr_shrink);
  if (config.lr_schedule == "cosine") return std::make_unique<CosineSchedule>(lr, total_steps, config.min_lr);
  return std::make_unique<PlateauSchedule>(lr, size_t(config.patience), config.lr_shrink, config.min_lr);
}

bool all_finite(const Tensor& t) {
  if (t.dtype() != DType::F32 && t.dtype() != DType::BF16) return true;  // integer buffers cannot hold NaN
  Tensor host = t.to(Device::CPU);
  for (int64_t i = 0; i < host.numel(); ++i) {
    const float v = host.dtype() == DType::F32 ? host.data<float>()[i] : to_float(host.data<bf16>()[i]);
    if (!std::isfinite(v)) return false;
  }
  return true;
}

// The first parameter or backbone stage whose values are not finite: where a NaN loss came from.
std::string locate_nonfinite(Context& ctx, FaceModel& model, const Tensor& images) {
  for (NamedParameter& np : model.named_parameters())
    if (!all_finite(np.parameter->value)) return "parameter " + np.name;
  Sequential& backbone = model.backbone();
  Tensor x = images;
  if (!all_finite(x)) return "the input images";
  for (size_t i = 0; i < backbone.size(); ++i) {
    x = backbone[i].forward(ctx, x);
    if (!all_finite(x)) return "the output of backbone layer '" + backbone.child_name(i) + "'";
  }
  return "a task branch or loss head (the backbone's output is finite)";
}

// ---- logging -------------------------------------------------------------------------------------

const char* const kLossHeader =
    "step,epoch,lr,loss,loss_fr,loss_gender,loss_age,accuracy_fr,accuracy_gender,accuracy_age,images_per_s";
const char* const kValidHeader = "step,task,figure,value";
// state-STEP.safetensors holds the momentum laid out as model-STEP.safetensors holds the weights
// (convolutions OIHW) and says so in this metadata entry; older state files lack it and hold the
// convolutions' momentum OHWI, as the layers keep it.
const char* const kMomentumLayoutKey = "momentum_layout";

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class Run {
 public:
  // `comm` is made before the Context: a GPU rank runs on its local rank's GPU.
  Run(const TrainConfig& config, bool resume, Communicator& comm);
  TrainSummary loop();

 private:
  // Several processes (mpirun): rank 0 writes the run folder and logs; see docs/design.md.
  bool leader() const { return comm_.rank() == 0; }
  // The data-parallel path: every communicator but the single process one, so `mpirun -np 1` (or NCCL
  // over one GPU) runs the same collectives, buckets and checkpoint layout as K ranks do.
  bool distributed() const { return std::strcmp(comm_.backend(), "single") != 0; }
  bool sharded(const NamedParameter& np) const { return config_.shard_classes && np.name == "fr.weight"; }
  void start_data_parallel(const std::vector<NamedParameter>& trained);
  void check_resume_world_size();
  void average_gradients();
  void mark_final(Layer& done);
  std::vector<double> agree_on(std::vector<double> values);
  double max_over_ranks(double local);
  nlohmann::json loader_positions(const LoaderPosition& next);
  Tensor gather_shards(const Tensor& mine);
  void gather_head(std::vector<std::pair<std::string, Tensor>>& tensors);

  void refine_budget_steps(int64_t first_step);
  void write_profile(Profiler& profiler, int64_t steps, double seconds);
  void claim_folder(bool resume);
  void save_checkpoint(const LoaderPosition& next);
  nlohmann::json resume_from_latest();  // the checkpoint's state JSON
  void validate_now();
  std::vector<TaskLabels> step_tasks(const DeviceBatch& input) const;
  void update(const std::vector<TaskLabels>& trained, double lr);
  void log_row(int64_t step, const std::vector<TaskLabels>& trained, const std::vector<HeadStats>& stats,
               double loss, double lr, int64_t epoch, double images_per_second);

  TrainConfig config_;
  Communicator& comm_;
  RunFolder folder_;
  std::vector<Task> tasks_;
  Context ctx_;
  Loader loader_;
  int64_t total_steps_ = 0;  // with --time-budget: an estimate refined after every step
  double trained_seconds_before_ = 0;  // training time of the run before this process (resumed runs)
  double trained_bytes_ = 0;           // of the trained parameters' f32 values (--profile's SGD rate)
  std::chrono::steady_clock::time_point loop_start_ = std::chrono::steady_clock::now();
  std::unique_ptr<FaceModel> model_;
  std::unique_ptr<SgdOptimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::unique_ptr<StepGraph> step_graph_;  // --cuda-graph auto on a GPU, where it applies
  std::string graph_off_;                  // without step_graph_ on a GPU: "off: " and why
  bool graph_failure_said_ = false;
  int64_t step_ = 0;
  double best_score_ = NAN;
  int64_t best_step_ = 0;  // the step of the best validation: "steps without progress" count from it
  int64_t last_checkpoint_ = -1;
  std::unique_ptr<RunLock> lock_;  // rank 0: held while this trainer writes the run folder
  RunLog losses_, validations_;   // rank 0's; validations_ only with --valid-sets
  std::unique_ptr<GradBuckets> buckets_;  // several ranks: the trained gradients, averaged in buckets
  std::map<const Parameter*, int> bucket_index_;  // gradient -> its index in buckets_
  std::vector<int> branch_gradients_;            // outside the backbone: final before its backward starts
  std::vector<bool> marked_;                     // this step's gradients marked final
  bool branches_marked_ = false;
  // Set for the backward whose gradients are averaged next (with gradient accumulation: the last
  // micro-batch's only; earlier ones must not start buckets that later ones still add to).
  bool overlap_armed_ = false;
};

Device run_device(const TrainConfig& config) { return parse_device(config.device); }

// The class of each training record that balanced batches balance: identities for FR and multi,
// genders or age bins for a Gender or Age run (as the original's 2 x 75 and 7 x 20 batches).
std::vector<int32_t> balance_classes(const TrainConfig& config) {
  PackSet packs(config.train_sets);
  std::vector<int32_t> classes(size_t(packs.size()));
  for (int64_t i = 0; i < packs.size(); ++i) {
    const RecordLabels labels = packs.record(i).labels;
    classes[size_t(i)] = config.task == "Gender" ? labels.gender
                         : config.task == "Age"  ? (labels.age < 0 ? -1 : age_to_bin(labels.age, age_edges(config)))
                                                 : labels.identity;
  }
  return classes;
}

LoaderOptions loader_options(const TrainConfig& config, const Communicator& comm) {
  LoaderOptions options;
  options.rank = comm.rank();
  options.world_size = comm.world_size();
  options.packs = config.train_sets;
  options.batch_size = config.batch;
  options.workers = config.workers;
  options.image_size = config.input_size;
  options.augment.flip = config.flip;
  options.augment.scale_jitter = config.scale_jitter;
  options.augment.shift_jitter = config.shift_jitter;
  options.augment.colour_jitter = config.colour_jitter;
  options.seed = config.seed;
  options.drop_last = true;
  if (config.ids_per_batch > 0) {  // after options.world_size: each rank's batches are balanced
    auto sampler = std::make_shared<BalancedSampler>(balance_classes(config), config.ids_per_batch,
                                                     config.imgs_per_id, config.seed, options.world_size);
    options.sampler = [sampler](int64_t epoch) { return (*sampler)(epoch); };
    options.samples_per_epoch = sampler->samples_per_epoch();
  }
  return options;
}

Run::Run(const TrainConfig& config, bool resume, Communicator& comm)
    : config_(config), comm_(comm), folder_{fs::path(config.out)}, tasks_(tasks_of(config)),
      ctx_(run_device(config), comm.local_rank()), loader_(loader_options(config, comm)) {
  ctx_.set_deterministic(config_.deterministic);
  const Precision precision = resolve_precision(config_.precision, ctx_);
  if (ctx_.is_cuda()) {
    ctx_.set_precision(precision);
    if (config_.precision == "auto" && leader())
      std::printf("precision: %s (--precision auto on this GPU)\n", precision_name(precision));
  } else if (precision != Precision::FP32 && leader()) {
    std::printf("note: --precision %s applies to GPUs; the CPU trains in fp32\n", config_.precision.c_str());
  }

  CUFACE_CHECK(loader_.steps_per_epoch() > 0, "--train-sets hold fewer images than one --batch of " +
                                                  std::to_string(config_.batch));
  // A time budget's length is unknown until steps are timed: the loop refines it after each one.
  total_steps_ = config_.time_budget > 0 ? std::numeric_limits<int32_t>::max()
                 : config_.steps > 0     ? config_.steps
                                         : config_.epochs * loader_.steps_per_epoch();

  if (resume) check_resume_world_size();
  CUFACE_CHECK(distributed() || !(config_.sync_bn || config_.shard_classes),
               "--sync-bn and --shard-classes need an MPI launch: start with mpirun -np K cuface train ...");
  FaceModelOptions options = model_options(config_, tasks_, loader_.packs().classes());
  if (config_.shard_classes) options.shard_classes = &comm_;
  model_ = std::make_unique<FaceModel>(options);
  if (config_.sync_bn) BatchNorm::sync_all(*model_, &comm_);
  if (!resume && !config_.init.empty()) {
    LoadReport report = load_model(config_.init, model_->backbone(), true);
    if (leader()) std::printf("init %s: %s\n", config_.init.c_str(), report.summary().c_str());
  }
  model_->to(ctx_.device());
  if (config_.freeze_backbone) model_->backbone().set_frozen(true);

  std::vector<NamedParameter> trained;
  std::vector<NamedParameter> backbone = model_->backbone().named_parameters();
  for (NamedParameter& np : model_->named_parameters()) {
    const bool in_backbone = std::any_of(backbone.begin(), backbone.end(),
                                         [&](const NamedParameter& b) { return b.parameter == np.parameter; });
    if (!(config_.freeze_backbone && in_backbone)) trained.push_back(np);
  }
  WeightDecay decay{config_.wd_backbone, config_.wd_fr, config_.wd_gender, config_.wd_age};
  optimizer_ = std::make_unique<SgdOptimizer>(trained, config_.momentum, decay);
  for (const NamedParameter& np : trained) trained_bytes_ += tensor_bytes(np.parameter->value);
  schedule_ = make_schedule(config_, config_.task_lr(config_.task), total_steps_);
  if (ctx_.is_cuda()) {
    const char* eager_because = config_.cuda_graph == "off" ? "--cuda-graph off"
                                : distributed()
                                    ? "several processes: NCCL's watchdog polls each collective, which a capture forbids"
                                : config_.accumulate > 1    ? "--accumulate"
                                : config_.profile           ? "--profile times each layer"
                                : config_.freeze_backbone   ? "--freeze-backbone"
                                : config_.multi_mode == "alternate" && tasks_.size() > 1
                                    ? "--multi-mode alternate: each step updates other parameters"
                                    : nullptr;
    if (eager_because) {
      graph_off_ = std::string("off: ") + eager_because;
      if (leader() && config_.cuda_graph == "auto") std::printf("CUDA graph: off (%s)\n", eager_because);
    } else {
      step_graph_ = std::make_unique<StepGraph>(ctx_, *model_, *optimizer_);
      if (leader()) std::printf("CUDA graph: the training step replays from a CUDA graph after the first step\n");
    }
  }

  // Taken after the model is built and --init loaded: an error there leaves no folder behind.
  if (leader()) claim_folder(resume);
  const nlohmann::json state = resume ? resume_from_latest() : nlohmann::json::object();
  if (distributed()) start_data_parallel(trained);
  if (!leader()) return;
  // Only --steps / --epochs can differ on a resume; an unchanged config.json is left as it was.
  const std::string config_text = config_.to_json().dump(2) + "\n";
  if (!resume || read_text(folder_.config()) != config_text) write_file_atomically(folder_.config(), config_text);
  if (resume) {
    losses_.resume(folder_.losses(), kLossHeader, state.value("loss_debug_bytes", int64_t(-1)));
    if (!config_.valid_sets.empty())
      validations_.resume(folder_.validations(), kValidHeader, state.value("valid_bytes", int64_t(-1)));
  } else {
    losses_.create(folder_.losses(), kLossHeader);
    if (!config_.valid_sets.empty()) validations_.create(folder_.validations(), kValidHeader);
  }
  if (config_.lr_schedule == "plateau" && config_.patience >= total_steps_ && config_.time_budget == 0)
    std::printf("note: the plateau schedule lowers the LR only after --patience %lld steps without progress, so "
                "these %lld steps train at a constant LR (--lr-schedule cosine or step decays within them)\n",
                (long long)config_.patience, (long long)total_steps_);
}

// Takes the run folder for this trainer (RunLock). A new run creates it and refuses one holding another
// run's files: a finished or resumable run (`latest`), or a run that failed before its first
// checkpoint, whose logs a second run would otherwise continue.
void Run::claim_folder(bool resume) {
  if (resume) {
    CUFACE_CHECK(fs::is_directory(folder_.dir), "--resume: '" + folder_.dir.string() + "' is not a folder");
    lock_ = std::make_unique<RunLock>(folder_);
    return;
  }
  fs::create_directories(folder_.dir);
  lock_ = std::make_unique<RunLock>(folder_);
  CUFACE_CHECK(!fs::exists(folder_.latest()), "--out '" + folder_.dir.string() +
                                                  "' already holds a run: continue it with --resume, or choose "
                                                  "another --out");
  const std::vector<std::string> files = folder_.run_files();
  std::string listed;
  for (const std::string& name : files) listed += (listed.empty() ? "" : ", ") + name;
  CUFACE_CHECK(files.empty(), "--out '" + folder_.dir.string() + "' holds a run that ended before its first "
                                  "checkpoint (" + listed + "), so there is nothing to resume: remove the folder "
                                  "(rm -r " + folder_.dir.string() + "), or choose another --out");
}

// Checkpoints from before multi-process training have no world size: one process wrote them.
void Run::check_resume_world_size() {
  if (!fs::exists(folder_.latest())) return;  // resume_from_latest names that problem
  const int64_t step = std::stoll(read_text(folder_.latest()));
  const int64_t saved_world = read_json(folder_.state_json(step)).value("world_size", int64_t(1));
  CUFACE_CHECK(saved_world == comm_.world_size(),
               "--resume: '" + folder_.dir.string() + "' was trained by " + std::to_string(saved_world) +
                   " process(es) and this run has " + std::to_string(comm_.world_size()) +
                   "; resume with the same number (mpirun -np " + std::to_string(saved_world) +
                   "): changing the world size changes every rank's share of the data and is not supported");
}

nlohmann::json Run::resume_from_latest() {
  CUFACE_CHECK(fs::exists(folder_.latest()), "--resume: '" + folder_.dir.string() +
                                                 "' has no checkpoint ('latest'): the run ended before its first one, "
                                                 "so there is nothing to resume; start it again in a new --out");
  const int64_t step = std::stoll(read_text(folder_.latest()));
  nlohmann::json state = read_json(folder_.state_json(step));
  std::map<std::string, Tensor> model = load_safetensors(folder_.model(step).string()).tensors;
  SafetensorsFile moments = load_safetensors(folder_.state(step).string());
  if (config_.shard_classes) {  // the files hold the whole head; each rank keeps its rows
    for (auto [tensors, name] : {std::pair{&model, "fr.weight"}, std::pair{&moments.tensors, "momentum.fr.weight"}}) {
      auto it = tensors->find(name);
      CUFACE_CHECK(it != tensors->end(), "--resume: the checkpoint has no '" + std::string(name) + "'");
      const auto [first, count] = ShardedMarginHead::shard_of(it->second.size(0), comm_.rank(), comm_.world_size());
      it->second = it->second.slice(first, first + count).clone();
    }
  }
  const LoadReport report = load_state(*model_, model);
  CUFACE_CHECK(report.exact(), "model file '" + folder_.model(step).string() + "' does not fit the model: " +
                                   report.summary());
  optimizer_->load_state(moments.tensors, /*convolutions_ohwi=*/!moments.metadata.count(kMomentumLayoutKey));
  step_ = state.at("step").get<int64_t>();
  schedule_->from_json(state.at("schedule"));
  if (!state.at("best_score").is_null()) best_score_ = state.at("best_score").get<double>();
  best_step_ = state.value("best_step", int64_t(0));
  if (state.contains("loader_positions")) {
    const nlohmann::json& mine = state.at("loader_positions").at(size_t(comm_.rank()));
    loader_.seek({mine.at(0).get<int64_t>(), mine.at(1).get<int64_t>()});
  } else {
    loader_.seek({state.at("loader_epoch").get<int64_t>(), state.at("loader_step").get<int64_t>()});
  }
  last_checkpoint_ = step_;
  trained_seconds_before_ = state.value("trained_seconds", 0.0);
  // A finished run stays as it is: nothing is trained, validated or rewritten.
  CUFACE_CHECK(config_.time_budget == 0 || trained_seconds_before_ < config_.time_budget,
               "--resume: the run in '" + folder_.dir.string() + "' has finished: it trained " +
                   format_duration(trained_seconds_before_) + " of its --time-budget " +
                   format_duration(config_.time_budget) + "; give a longer --time-budget to train it further");
  CUFACE_CHECK(step_ < total_steps_,
               "--resume: the run in '" + folder_.dir.string() + "' has finished: its checkpoint is at step " +
                   std::to_string(step_) + " and the run asks for " + std::to_string(total_steps_) +
                   " steps; give --steps (or --epochs) beyond step " + std::to_string(step_) + " to train it further");
  // A longer budget re-lays the cosine over the whole new budget (as if it had been given at the
  // start), so the schedule saved at the old budget's end has not run its course.
  CUFACE_CHECK(config_.time_budget > 0 || !schedule_->should_stop(),
               "--resume: the run in '" + folder_.dir.string() + "' has finished: it stopped at step " +
                   std::to_string(step_) + " when its learning rate fell below --min-lr");
  if (leader()) std::printf("resumed %s at step %lld\n", folder_.dir.string().c_str(), (long long)step_);
  return state;
}

void Run::save_checkpoint(const LoaderPosition& next) {
  ctx_.synchronize();
  // Collective parts first (every rank): the loader positions and, sharded, the whole FR head.
  const nlohmann::json positions = loader_positions(next);
  std::vector<std::pair<std::string, Tensor>> model = export_state(*model_), moments = optimizer_->state();
  gather_head(model);
  gather_head(moments);
  last_checkpoint_ = step_;
  if (!leader()) return;
  // The logs first: the checkpoint records how long they are, and resuming cuts them back to that.
  const int64_t loss_bytes = losses_.sync();
  save_safetensors(folder_.model(step_).string(), model, {{"step", std::to_string(step_)}, {"arch", config_.arch}});
  save_safetensors(folder_.state(step_).string(), moments, {{kMomentumLayoutKey, "oihw"}});
  nlohmann::json state = {{"step", step_},
                          {"loss_debug_bytes", loss_bytes},
                          {"loader_epoch", next.epoch},
                          {"loader_step", next.step},
                          {"schedule", schedule_->to_json()},
                          {"best_score", std::isnan(best_score_) ? nlohmann::json() : nlohmann::json(best_score_)},
                          {"best_step", best_step_},
                          {"trained_seconds", trained_seconds_before_ + seconds_since(loop_start_)}};
  if (distributed()) {
    state["world_size"] = comm_.world_size();
    state["loader_positions"] = positions;  // [[epoch, step] of rank 0, rank 1, ...]
  }
  if (validations_.is_open()) state["valid_bytes"] = validations_.sync();
  write_file_atomically(folder_.state_json(step_), state.dump(2) + "\n");
  write_file_atomically(folder_.latest(), std::to_string(step_) + "\n");  // last: the checkpoint is complete

  // Keep the newest few checkpoints.
  std::vector<int64_t> steps;
  for (const auto& entry : fs::directory_iterator(folder_.dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors")
      steps.push_back(std::stoll(name.substr(6)));
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + size_t(std::max<int64_t>(config_.keep_checkpoints, 1)) < steps.size(); ++i)
    for (const fs::path& old : {folder_.model(steps[i]), folder_.state(steps[i]), folder_.state_json(steps[i])})
      fs::remove(old);
}

void Run::validate_now() {
  if (config_.valid_sets.empty()) return;
  // Rank 0 validates; the others wait in the next collective (mind CUFACE_COMM_TIMEOUT).
  bool improved = false;
  if (leader()) {
    const ValidationOptions options = validation_options(config_);
    // The first task chooses the best checkpoint; every task is reported.
    for (size_t t = 0; t < tasks_.size(); ++t) {
      ValidationResult result = validate(ctx_, *model_, tasks_[t], options);
      if (t == 0 && (std::isnan(best_score_) || result.score > best_score_)) {
        best_score_ = result.score;
        best_step_ = step_;
        improved = true;
      }
      if (t == 0) {  // progress is judged by the first task's score, named on the line
        result.figures["steps_without_progress"] = step_ - best_step_;
        char progress[160];
        std::snprintf(progress, sizeof progress, "; %lld steps without progress (best %s %.4g at step %lld)",
                      (long long)(step_ - best_step_), result.score_name.c_str(), best_score_, (long long)best_step_);
        result.summary += progress;
      }
      std::printf("valid %s step %lld: %s\n%s", task_name(tasks_[t]), (long long)step_, result.summary.c_str(),
                  result.details.c_str());
      std::string rows;
      for (const auto& [key, value] : result.figures.items())
        rows += std::to_string(step_) + "," + task_name(tasks_[t]) + "," + key + "," + value.dump() + "\n";
      validations_.append(rows);
      validations_.flush();
    }
    model_->set_training(true);
  }
  // A sharded FR head is spread over the ranks: all of them learn rank 0's decision and gather it.
  if (config_.shard_classes) improved = max_over_ranks(improved ? 1 : 0) > 0;
  if (!improved) return;
  ctx_.synchronize();
  std::vector<std::pair<std::string, Tensor>> model = export_state(*model_);
  gather_head(model);
  if (leader())
    save_safetensors(folder_.best().string(), model,
                     {{"step", std::to_string(step_)}, {"score", std::to_string(best_score_)}, {"arch", config_.arch}});
}

// The tasks step_ trains with their labels: every task of the run, or with --multi-mode alternate
// one task per step, round robin (step s trains task s mod T), so a resumed run alternates the same.
std::vector<TaskLabels> Run::step_tasks(const DeviceBatch& input) const {
  std::vector<TaskLabels> labels;
  for (Task task : tasks_) {
    const Tensor& l = task == Task::FR ? input.identity : task == Task::Gender ? input.gender : input.age;
    const float weight = task == Task::FR ? config_.weight_fr : task == Task::Gender ? config_.weight_gender
                                                                                       : config_.weight_age;
    labels.push_back({task, l, weight});
  }
  if (config_.multi_mode == "alternate") return {labels[size_t(step_ % int64_t(labels.size()))]};
  return labels;
}

// The SGD update after a step's gradients, which it zeroes in the same pass. Alternating, only the
// backbone and the trained branch move: the other branches got no gradient this step and keep their
// weights and momentum.
void Run::update(const std::vector<TaskLabels>& trained, double lr) {
  // Reads weight, gradient and momentum, writes weight and momentum, zeroes the gradient.
  ProfileScope scope(ctx_, "SGD update + zero_grad", Pass::Step, {0, 6 * trained_bytes_});
  if (trained.size() == tasks_.size()) {
    optimizer_->step(ctx_, lr);
  } else {
    std::vector<std::string> parts{"backbone"};
    for (const TaskLabels& t : trained)
      parts.push_back(t.task == Task::FR ? "fr" : t.task == Task::Gender ? "gender" : "age");
    optimizer_->step(ctx_, lr, parts);
  }
}

void Run::log_row(int64_t step, const std::vector<TaskLabels>& trained, const std::vector<HeadStats>& stats,
                  double loss, double lr, int64_t epoch, double images_per_second) {
  if (!leader()) return;
  double task_loss[3] = {NAN, NAN, NAN}, task_accuracy[3] = {NAN, NAN, NAN};
  for (size_t t = 0; t < trained.size(); ++t) {
    task_loss[int(trained[t].task)] = stats[t].loss;
    task_accuracy[int(trained[t].task)] = stats[t].accuracy;
  }
  auto cell = [](double v) { return std::isnan(v) ? std::string() : std::to_string(v); };
  std::ostringstream row;
  row << step << "," << epoch << "," << lr << "," << loss;
  for (double v : task_loss) row << "," << cell(v);
  for (double v : task_accuracy) row << "," << cell(v);
  row << "," << images_per_second << "\n";
  losses_.append(row.str());
}

// ---- several processes ---------------------------------------------------------------------------

// Every rank starts from rank 0's weights and BatchNorm buffers (a sharded head's rows are each rank's
// own), and the trained gradients move into flat buckets, averaged over the ranks after backward.
void Run::start_data_parallel(const std::vector<NamedParameter>& trained) {
  for (NamedParameter& np : model_->named_parameters())
    if (!sharded(np)) comm_.broadcast(ctx_, np.parameter->value, 0);
  std::vector<Parameter*> averaged;
  for (const NamedParameter& np : trained)  // the optimizer's: not a frozen backbone, not buffers
    if (np.parameter->trainable && !sharded(np)) averaged.push_back(np.parameter);
  std::reverse(averaged.begin(), averaged.end());  // backward order: the buckets fill last layer first
  std::vector<Shape> shapes;
  for (Parameter* p : averaged) shapes.push_back(p->value.shape());
  const DType wire = config_.gradient_wire == "bf16" ? DType::BF16 : DType::F32;
  buckets_ = std::make_unique<GradBuckets>(comm_, shapes, ctx_.device(), GradBuckets::kDefaultBucketBytes, wire);
  std::vector<NamedParameter> backbone = model_->backbone().named_parameters();
  for (size_t i = 0; i < averaged.size(); ++i) {
    Tensor view = buckets_->grad(int(i));
    view.copy_from(averaged[i]->grad);
    averaged[i]->grad = view;  // layers accumulate into the bucket views from now on
    bucket_index_[averaged[i]] = int(i);
    const auto same = [&](const NamedParameter& b) { return b.parameter == averaged[i]; };
    if (std::none_of(backbone.begin(), backbone.end(), same)) branch_gradients_.push_back(int(i));
  }
  marked_.assign(averaged.size(), false);
  // Overlap: the backbone's top-level layers and its stages' blocks report when their backward is done.
  Sequential& stem_and_stages = model_->backbone();
  stem_and_stages.set_backward_hook([this](Layer& done) { mark_final(done); });
  for (size_t i = 0; i < stem_and_stages.size(); ++i)
    if (auto* stage = dynamic_cast<Sequential*>(&stem_and_stages[i]))
      stage->set_backward_hook([this](Layer& done) { mark_final(done); });
  int64_t floats = 0;
  for (int b = 0; b < buckets_->bucket_count(); ++b) floats += buckets_->bucket(b).numel();
  if (leader())
    std::printf("data parallel: %d rank%s (%s), --batch %d per rank%s%s; gradients averaged per step: %.1f MB %s in %d "
                "buckets\n",
                comm_.world_size(), comm_.world_size() == 1 ? "" : "s", comm_.backend(), config_.batch,
                config_.sync_bn ? ", sync-BN" : "",
                config_.shard_classes ? ", FR classes sharded" : "", double(floats) * double(dtype_size(wire)) / 1e6,
                config_.gradient_wire.c_str(), buckets_->bucket_count());
}

// `done`'s gradients are final: GradBuckets starts each bucket whose gradients all are (in order),
// while backward goes on. The branches' gradients were final before the backbone's backward began.
void Run::mark_final(Layer& done) {
  if (!overlap_armed_) return;
  auto mark = [this](int i) {
    if (marked_[size_t(i)]) return;  // a block's parameters, then again with its whole stage
    marked_[size_t(i)] = true;
    buckets_->mark_ready(ctx_, i);
  };
  if (!branches_marked_) {
    for (int i : branch_gradients_) mark(i);
    branches_marked_ = true;
  }
  for (const NamedParameter& np : done.named_parameters()) {
    auto it = bucket_index_.find(np.parameter);
    if (it != bucket_index_.end()) mark(it->second);
  }
}

// The mean over the ranks of every bucket: those not started during backward start now (a frozen
// backbone's, or all of them when backward reported nothing), then all are waited for.
void Run::average_gradients() {
  buckets_->wait(ctx_);
  marked_.assign(marked_.size(), false);
  branches_marked_ = false;
  overlap_armed_ = false;
}

std::vector<double> Run::agree_on(std::vector<double> values) {
  comm_.all_reduce_scalars(values, ReduceOp::Mean);
  return values;
}

// The largest `local` of the ranks, on every rank: a signal seen by one rank stops all of them
// together; rank 0's "validation improved" reaches the others.
double Run::max_over_ranks(double local) {
  if (!distributed()) return local;
  std::vector<double> value{local};
  comm_.all_reduce_scalars(value, ReduceOp::Max);
  return value[0];
}

nlohmann::json Run::loader_positions(const LoaderPosition& next) {
  Tensor mine = Tensor::empty({1, 2}, DType::I32), all = Tensor::empty({comm_.world_size(), 2}, DType::I32);
  mine.data<int32_t>()[0] = int32_t(next.epoch);
  mine.data<int32_t>()[1] = int32_t(next.step);
  comm_.all_gather(ctx_, mine, all);
  nlohmann::json positions = nlohmann::json::array();
  for (int r = 0; r < comm_.world_size(); ++r)
    positions.push_back({all.data<int32_t>()[2 * r], all.data<int32_t>()[2 * r + 1]});
  return positions;
}

// The whole of a row-sharded tensor (this rank's rows given) on rank 0's host; the other ranks get an
// undefined tensor. Each rank's rows reach rank 0 by a broadcast from that rank, so besides rank 0
// no rank ever holds more than one shard (an all-gather would put the whole C x D head, gigabytes at
// a million classes, on every rank's host at every checkpoint).
Tensor Run::gather_shards(const Tensor& mine) {
  const int k = comm_.world_size();
  const int64_t classes = static_cast<ShardedMarginHead&>(model_->head(Task::FR)).classes(), dim = mine.size(1);
  Tensor whole = leader() ? Tensor::empty({classes, dim}) : Tensor();
  Tensor rows = Tensor::empty({ShardedMarginHead::shard_of(classes, 0, k).second, dim});  // rank 0's shard is the largest
  for (int r = 0; r < k; ++r) {
    const auto [first, count] = ShardedMarginHead::shard_of(classes, r, k);
    Tensor part = rows.slice(0, count);
    if (comm_.rank() == r) part.copy_from(mine.to(Device::CPU));
    comm_.broadcast(ctx_, part, r);
    if (leader()) whole.slice(first, first + count).copy_from(part);
  }
  return whole;
}

// With --shard-classes, this rank's rows of the FR head (and of its momentum) become the whole head on
// rank 0 (undefined elsewhere); a collective: every rank calls it.
void Run::gather_head(std::vector<std::pair<std::string, Tensor>>& tensors) {
  if (!config_.shard_classes) return;
  for (auto& [name, tensor] : tensors)
    if (name == "fr.weight" || name == "momentum.fr.weight") tensor = gather_shards(tensor);
}

// --time-budget: the run's length is the steps that fit the budget at the pace of this process's
// steps so far (validations and checkpoints included); the step that reaches it is the last. The LR
// schedule is laid over the budget's time itself: its length is set so that the next step's place in
// it is the fraction of the budget spent, so the rate falls with the clock even when the pace changes
// (an estimate of steps alone would raise it again whenever the steps got faster). Every rank must
// stop at the same step and use the same rate: they agree on the largest figures.
void Run::refine_budget_steps(int64_t first_step) {
  const double seconds = seconds_since(loop_start_);
  double spent = trained_seconds_before_ + seconds;
  const double per_step = seconds / double(step_ - first_step);
  int64_t estimate = step_ + int64_t(std::clamp((config_.time_budget - spent) / per_step, 0.0, 1e9));
  if (distributed()) {
    estimate = int64_t(max_over_ranks(double(estimate)));
    spent = max_over_ranks(spent);
  }
  total_steps_ = estimate;
  const double fraction = std::clamp(spent / config_.time_budget, 1e-9, 1.0);
  schedule_->set_total_steps(std::max<int64_t>(step_, int64_t(std::llround(double(step_) / fraction))));
}

// --profile's table: printed, and written to the run folder (profile.txt, profile.csv).
void Run::write_profile(Profiler& profiler, int64_t steps, double seconds) {
  if (steps == 0) {
    std::printf("profile: no step to profile (the first step of a process is not profiled)\n");
    return;
  }
  char title[192];
  std::snprintf(title, sizeof title, "profile: %lld steps (this process's first excluded), %.1f ms a step, %.1f img/s",
                (long long)steps, 1e3 * seconds / double(steps),
                double(steps) * config_.batch * comm_.world_size() / seconds);
  const std::string table = profiler.table(ctx_, seconds, title);
  std::printf("%s", table.c_str());
  write_file_atomically(folder_.dir / "profile.txt", table);
  profiler.write_csv(ctx_, folder_.dir / "profile.csv", seconds);
}

TrainSummary Run::loop() {
  NormaliseOptions normalise;
  normalise.dtype = ctx_.is_cuda() && ctx_.precision() == Precision::BF16 ? DType::BF16 : DType::F32;
  BatchUploader uploader(ctx_, normalise);
  const bool age = has_task(tasks_, Task::Age);
  auto stage_next = [&] {
    Batch batch = loader_.next();
    if (age)  // the age head's labels are bins, not years
      for (int64_t i = 0; i < batch.size(); ++i)
        batch.age.data<int32_t>()[i] = age_to_bin(batch.age.data<int32_t>()[i], age_edges(config_));
    uploader.stage(std::move(batch));
  };

  stop_signal() = 0;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  TrainSummary summary;
  summary.stopped_because = "steps done";
  if (step_ == 0 && config_.valid_at_start) validate_now();
  const bool budget = config_.time_budget > 0;
  if (step_ < total_steps_) stage_next();
  const int64_t first_step = step_;
  const auto start = loop_start_ = std::chrono::steady_clock::now();
  auto interval_start = start;
  // The printed figures are means over the steps since the last printed line (a task's over the steps
  // that trained it: with --multi-mode alternate, one step in three).
  double interval_loss = 0;
  int64_t interval_steps = 0;
  struct TaskFigures {
    double loss = 0, accuracy = 0;
    int64_t steps = 0;
  } interval_tasks[3];
  LoaderPosition next{0, 0};
  // --profile: every training step but this process's first (cuDNN's searches, first allocations),
  // without the validations and checkpoints between them.
  Profiler profiler;
  double profiled_seconds = 0;
  int64_t profiled_steps = 0;

  // A step's numbers once the host has them: the NaN check (naming the step and where the first
  // non-finite value sits), the schedule's record, the logged row and the printed line.
  struct QueuedStep {
    int64_t number = 0;  // as the logs number it: step_ after the step
    std::vector<TaskLabels> labels;
    double lr = 0;
    int64_t epoch = 0;
    Tensor images;  // for the NaN report
  };
  auto check_finite = [&](const QueuedStep& queued, const std::vector<HeadStats>& stats) {
    double loss = 0;
    for (size_t t = 0; t < stats.size(); ++t) loss += queued.labels[t].weight * stats[t].loss;
    if (!std::isfinite(loss))
      throw Error("loss is " + std::to_string(loss) + " at step " + std::to_string(queued.number) +
                  "; first non-finite: " + locate_nonfinite(ctx_, *model_, queued.images) +
                  ". The last good checkpoint is kept in '" + folder_.dir.string() + "' (step " +
                  std::to_string(last_checkpoint_) + ")");
    return loss;
  };
  auto account = [&](const QueuedStep& queued, const std::vector<HeadStats>& stats, double loss) {
    schedule_->record(loss);
    interval_loss += loss;
    ++interval_steps;
    for (size_t t = 0; t < stats.size(); ++t) {
      TaskFigures& figures = interval_tasks[int(queued.labels[t].task)];
      figures.loss += stats[t].loss;
      figures.accuracy += stats[t].accuracy;
      ++figures.steps;
    }
    const auto now = std::chrono::steady_clock::now();
    const double interval_seconds = std::chrono::duration<double>(now - interval_start).count();
    const double images_per_step = double(config_.batch) * double(comm_.world_size());
    log_row(queued.number, queued.labels, stats, loss, queued.lr, queued.epoch,
            images_per_step * double(interval_steps) / std::max(interval_seconds, 1e-9));
    const bool at_end = queued.number >= total_steps_;
    if ((queued.number % config_.log_every == 0 || at_end) && leader()) {
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double per_step = elapsed / double(queued.number - first_step);
      std::printf("step %lld/%lld epoch %lld lr %.3g loss %.4f", (long long)queued.number, (long long)total_steps_,
                  (long long)queued.epoch, queued.lr, interval_loss / double(interval_steps));
      for (int task = 0; task < 3; ++task)
        if (const TaskFigures& f = interval_tasks[task]; f.steps > 0)
          std::printf(" | %s loss %.4f acc %.3f", task_name(Task(task)), f.loss / double(f.steps),
                      f.accuracy / double(f.steps));
      std::printf(" | %.1f img/s, ETA %s\n", images_per_step * double(interval_steps) / interval_seconds,
                  format_duration(per_step * double(total_steps_ - queued.number)).c_str());
      std::fflush(stdout);
      losses_.flush();  // what `tail -f` shows; durable at each checkpoint
    }
    if (queued.number % config_.log_every == 0 || at_end) {
      summary.final_loss = interval_loss / double(interval_steps);
      interval_loss = 0;
      interval_steps = 0;
      for (TaskFigures& f : interval_tasks) f = {};
      interval_start = now;
    }
  };
  // The graph path reads a step's losses one step late: it queues step k+1 before it waits for step
  // k's, so the GPU never waits for the host between steps. `unread` is the step whose losses the
  // host has not read yet (number 0: none); everything that must see them (the schedule's next
  // decision, a validation, a checkpoint, the end) reads them first.
  QueuedStep unread{};
  auto read_unread = [&] {
    if (unread.number == 0) return;
    const std::vector<HeadStats> stats = step_graph_->wait_stats(unread.number - 1);
    account(unread, stats, check_finite(unread, stats));
    unread = {};
  };

  while (step_ < total_steps_) {
    const auto step_start = std::chrono::steady_clock::now();
    if (config_.profile && step_ > first_step) ctx_.set_profiler(&profiler);
    DeviceBatch input = [&] {
      ProfileScope scope(ctx_, "input (wait + normalise)", Pass::Step);
      return uploader.take();
    }();
    next = {input.epoch, input.step + 1};
    if (next.step == loader_.steps_per_epoch()) next = {input.epoch + 1, 0};
    if (step_ + 1 < total_steps_ || budget) stage_next();  // a budget's estimate may still grow

    QueuedStep queued{step_ + 1, step_tasks(input), 0.0, input.epoch, input.images};
    // With a step unread, the schedule has promised its rate whatever that step's loss (else the
    // unread step was read at the end of the last iteration).
    const double scheduled = unread.number > 0 ? *schedule_->lr_after_next_record() : schedule_->lr();
    queued.lr = scheduled * warmup_factor(step_, config_.warmup);
    if (step_graph_) {  // the update included, skipped on the device once a loss is not finite
      step_graph_->queue_step(ctx_, input.images, queued.labels, step_, queued.lr);
      if (!step_graph_->failure().empty() && !graph_failure_said_ && leader())
        std::printf("CUDA graph: off from step %lld: %s\n", (long long)step_, step_graph_->failure().c_str());
      graph_failure_said_ = !step_graph_->failure().empty();
      read_unread();
      unread = std::move(queued);
    } else {
      // Several ranks: the gradient buckets start during the last micro-batch's backward (earlier ones
      // still add into them) and are averaged before the optimizer runs.
      AccumulateHooks hooks;
      if (distributed()) {
        hooks.before_last_micro_batch = [this] { overlap_armed_ = true; };
        hooks.after_backward = [this] { average_gradients(); };
      }
      std::vector<HeadStats> stats =
          accumulated_train_step(ctx_, *model_, *optimizer_, input.images, queued.labels, config_.accumulate,
                                 !config_.freeze_backbone, step_, hooks);
      if (distributed()) {
        // Every rank logs and decides (plateau LR, NaN) on the same numbers: the means over the ranks.
        std::vector<double> figures;
        for (const HeadStats& s : stats) figures.insert(figures.end(), {s.loss, s.accuracy});
        figures = agree_on(figures);
        for (size_t t = 0; t < stats.size(); ++t) {
          stats[t].loss = float(figures[2 * t]);
          stats[t].accuracy = float(figures[2 * t + 1]);
        }
      }
      const double loss = check_finite(queued, stats);
      update(queued.labels, queued.lr);
      if (ctx_.profiler()) {
        profiler.collect(ctx_);
        ctx_.set_profiler(nullptr);
        profiled_seconds += seconds_since(step_start);
        ++profiled_steps;
      }
      account(queued, stats, loss);
    }
    ++step_;
    if (budget) refine_budget_steps(first_step);

    // The run's last step validates and saves like a checkpoint step, validation first, so that the
    // checkpoint records every row of the logs.
    const bool done = step_ >= total_steps_;
    const int signal = done ? 0 : int(max_over_ranks(stop_signal()));
    const bool validation_step = config_.valid_every > 0 && step_ % config_.valid_every == 0;
    const bool checkpoint_step = config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0;
    // With the unread step's rate promised, its record cannot stop the schedule either: lr_spent below
    // is what it would be after reading it.
    if (done || signal != 0 || validation_step || checkpoint_step || !schedule_->lr_after_next_record())
      read_unread();
    if (done && budget) summary.stopped_because = "time budget spent";
    const bool lr_spent = !done && schedule_->should_stop();
    const bool last = done || lr_spent || signal != 0;
    if (validation_step || (last && signal == 0)) validate_now();
    if (checkpoint_step || last) save_checkpoint(next);
    if (lr_spent) summary.stopped_because = "learning rate below --min-lr";
    if (signal != 0) {
      summary.stopped_because = std::string("interrupted by ") + (signal == SIGINT ? "SIGINT (Ctrl-C)" : "SIGTERM");
      summary.stop_signal = signal;
    }
    if (last) break;
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (config_.profile && leader()) write_profile(profiler, profiled_steps, profiled_seconds);
  if (interval_steps > 0) summary.final_loss = interval_loss / double(interval_steps);
  summary.steps = step_;
  summary.leader = leader();
  summary.cuda_graph = !step_graph_                ? graph_off_
                       : step_graph_->replaying()   ? "replayed"
                       : step_graph_->failure().empty() ? "off: no second step to capture"
                                                        : "off: " + step_graph_->failure();
  summary.best_score = best_score_;
  return summary;
}

}  // namespace

TrainSummary train(const TrainConfig& config, bool resume) {
  std::unique_ptr<Communicator> comm = make_communicator(run_device(config));
  return train(config, resume, *comm);
}

TrainSummary train(const TrainConfig& config, bool resume, Communicator& comm) {
  config.validate();
  try {
    check_data(config);
    Run run(config, resume, comm);
    return run.loop();
  } catch (const std::exception& e) {
    // One rank's error ends the job, with its message: the others may be waiting in a collective.
    if (comm.world_size() > 1) comm.abort_job("rank " + std::to_string(comm.rank()) + ": " + e.what());
    throw;
  }
}

}  // namespace cuface
