// The trainer's options beyond a plain run: gradient accumulation (equal to one big batch), multi-task
// alternation, validation figures as the original printed them, Ctrl-C, the frozen backbone and
// the per-part defaults.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <cmath>
#include <map>

#include "common/reference.h"
#include "engine/safetensors.h"
#include "face/model/face_model.h"
#include "face/train/accumulate.h"
#include "face/train/checkpoint.h"
#include "face/train/optimizer.h"
#include "face/train/trainer.h"
#include "train_fixtures.h"

namespace cuface {
namespace {

namespace fs = std::filesystem;
using testing::csv_rows;
using testing::labelled_pack;
using testing::relative_error;
using testing::ScratchDir;
using testing::slurp;
using testing::synthetic_pack;
using testing::tiny_config;

Tensor labels_of(const std::vector<int32_t>& values) {
  Tensor t = Tensor::empty({int64_t(values.size())}, DType::I32, Device::CPU);
  std::copy(values.begin(), values.end(), t.data<int32_t>());
  return t;
}

// Copies of the trainable parameters' values by name.
std::map<std::string, Tensor> trainable_values(FaceModel& model) {
  std::map<std::string, Tensor> out;
  for (NamedParameter& np : model.named_parameters())
    if (np.parameter->trainable) out[np.name] = np.parameter->value.clone();
  return out;
}

// `updates` SGD updates of `model`, each on batches()[u] run as `micro_batches` micro-batches.
using Batches = std::vector<std::pair<Tensor, std::vector<TaskLabels>>>;
std::map<std::string, Tensor> train_updates(FaceModel& model, const Batches& batches, int micro_batches,
                                            bool train_backbone, std::vector<float>* losses = nullptr) {
  Context ctx(Device::CPU);
  std::vector<NamedParameter> trained;
  for (NamedParameter& np : model.named_parameters())
    if (train_backbone || part_of(np.name) != "backbone") trained.push_back(np);
  SgdOptimizer optimizer(trained, 0.9, WeightDecay{});
  for (size_t u = 0; u < batches.size(); ++u) {
    std::vector<HeadStats> stats = accumulated_train_step(ctx, model, optimizer, batches[u].first, batches[u].second,
                                                          micro_batches, train_backbone, int64_t(u));
    if (losses) losses->push_back(stats[0].loss);
    optimizer.step(ctx, 0.05);  // and zeroes the gradients
  }
  return trainable_values(model);
}

void expect_same_weights(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b, double bound) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, value] : a) EXPECT_LT(relative_error(value, b.at(name)), bound) << name;
}

// A model with no batch statistics on the trained path: the backbone frozen (evaluation mode, running
// statistics), the gender head straight on the features (no hidden BN), no dropout. Four different
// micro-batches of 2 give the same updates as their batch of 8.
TEST(Accumulate, MicroBatchesEqualOneBatchWithoutBatchNorm) {
  FaceModelOptions options;
  options.arch = "tiny";
  options.gender = true;
  options.gender_hidden = {};
  options.head_dropout = 0;
  options.seed = 3;
  Batches batches;
  for (int u = 0; u < 3; ++u)
    batches.push_back({testing::random_tensor({8, 32, 32, 3}, 100 + u),
                       {{Task::Gender, labels_of({0, 1, 1, 0, 1, 0, u % 2, 1}), 1.0f}}});
  FaceModel whole(options), accumulated(options);
  const std::map<std::string, Tensor> initial = trainable_values(whole);
  std::vector<float> whole_losses, accumulated_losses;
  const auto a = train_updates(whole, batches, 1, false, &whole_losses);
  const auto b = train_updates(accumulated, batches, 4, false, &accumulated_losses);
  expect_same_weights(b, a, 1e-5);
  for (size_t u = 0; u < whole_losses.size(); ++u) EXPECT_NEAR(accumulated_losses[u], whole_losses[u], 1e-5);
  EXPECT_GT(relative_error(a.at("gender.head.weight"), initial.at("gender.head.weight")), 1e-3);  // it trained
  // Without the 1/N the sum would be 4x the batch gradient: the comparison above can tell.
}

// With BatchNorm in the trained path (the whole model, FR and gender) the micro-batches equal the
// batch when the batch is one micro-batch repeated: its batch statistics are the micro-batch's. One
// update: on this random net with BN over 4 values per channel, float rounding grows about 10x per
// update (measured: the same 4 images alone and repeated 3 times, without accumulation, drift
// apart as fast), so later updates compare rounding, not accumulation.
TEST(Accumulate, MicroBatchesEqualOneBatchOfRepeatsWithBatchNorm) {
  FaceModelOptions options;
  options.arch = "tiny";
  options.identities = 5;
  options.gender = true;
  options.embedding_dropout = 0;
  options.head_dropout = 0;
  options.margin.margin = default_margin_params(MarginType::CosFace);
  options.margin.margin.s = 16;  // a gentle head for a tiny untrained net
  options.seed = 4;
  Tensor micro = testing::random_tensor({4, 32, 32, 3}, 200);
  Tensor images = Tensor::empty({12, 32, 32, 3}, DType::F32, Device::CPU);
  std::vector<int32_t> identity, gender;
  for (int j = 0; j < 3; ++j) {
    images.slice(4 * j, 4 * j + 4).copy_from(micro);
    identity.insert(identity.end(), {0, 4, 2, 3});
    gender.insert(gender.end(), {0, 1, 1, 0});
  }
  const Batches batches{{images, {{Task::FR, labels_of(identity), 1.0f}, {Task::Gender, labels_of(gender), 0.5f}}}};
  FaceModel whole(options), accumulated(options);
  const std::map<std::string, Tensor> initial = trainable_values(whole);
  const auto a = train_updates(whole, batches, 1, true);
  const auto b = train_updates(accumulated, batches, 3, true);
  expect_same_weights(b, a, 2e-5);
  EXPECT_GT(relative_error(a.at("conv1.weight"), initial.at("conv1.weight")), 1e-4);  // the backbone trained
}

TEST(Accumulate, ResumesExactlyAndLogsPerUpdate) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  auto config = [&](const fs::path& out, int64_t steps, int accumulate) {
    TrainConfig c = tiny_config(pack, out, steps);
    c.accumulate = accumulate;
    return c;
  };
  train(config(dir / "straight", 6, 2), false);
  train(config(dir / "split", 3, 2), false);
  TrainConfig more = TrainConfig::from_json(nlohmann::json::parse(slurp(dir / "split" / "config.json")));
  more.steps = 6;
  train(more, true);
  EXPECT_EQ(slurp(dir / "straight" / "model-6.safetensors"), slurp(dir / "split" / "model-6.safetensors"));
  EXPECT_EQ(slurp(dir / "straight" / "state-6.safetensors"), slurp(dir / "split" / "state-6.safetensors"));
  EXPECT_EQ(csv_rows(dir / "split" / "loss_debug.csv").size(), 6u);  // a row per update
  train(config(dir / "plain", 6, 1), false);                            // it changes the training
  EXPECT_NE(slurp(dir / "plain" / "model-6.safetensors"), slurp(dir / "straight" / "model-6.safetensors"));
  try {
    train(config(dir / "bad", 2, 3), false);
    FAIL() << "--accumulate 3 with --batch 8 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--accumulate"), std::string::npos) << e.what();
  }
}

// ---- multi-task: sum or alternate --------------------------------------------------------------

std::map<std::string, Tensor> checkpoint(const fs::path& file) { return load_safetensors(file.string()).tensors; }

// Whether every tensor of `part` (part_of) is bit-identical in the two checkpoints.
bool part_unchanged(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b,
                    const std::string& part) {
  bool any = false;
  for (const auto& [name, value] : a) {
    if (part_of(name) != part || value.dtype() != DType::F32) continue;
    any = true;
    if (std::memcmp(value.data<float>(), b.at(name).data<float>(), size_t(value.numel()) * 4) != 0) return false;
  }
  EXPECT_TRUE(any) << "no tensor of part " << part;
  return true;
}

TEST(TrainMulti, AlternateTrainsOneTaskPerStepRoundRobinAndResumesExactly) {
  ScratchDir dir;
  const std::string pack = labelled_pack(dir);
  auto config = [&](const fs::path& out, int64_t steps) {
    TrainConfig c = tiny_config(pack, out, steps);
    c.task = "multi";
    c.multi_mode = "alternate";
    c.checkpoint_every = 1;
    c.keep_checkpoints = 10;
    return c;
  };
  train(config(dir / "straight", 4), false);
  // loss_debug.csv: the row of step s has only task s mod 3's loss (columns loss_fr, loss_gender, loss_age).
  const auto rows = csv_rows(dir / "straight" / "loss_debug.csv");
  ASSERT_EQ(rows.size(), 4u);
  for (size_t s = 0; s < rows.size(); ++s)
    for (size_t t = 0; t < 3; ++t) EXPECT_EQ(rows[s][4 + t].empty(), t != s % 3) << "step " << s << " task " << t;
  // Step 1 (the second) trains Gender: FR's and Age's branches keep their weights, the backbone moves.
  const auto after1 = checkpoint(dir / "straight" / "model-1.safetensors");
  const auto after2 = checkpoint(dir / "straight" / "model-2.safetensors");
  const auto after3 = checkpoint(dir / "straight" / "model-3.safetensors");
  EXPECT_TRUE(part_unchanged(after1, after2, "fr"));
  EXPECT_TRUE(part_unchanged(after1, after2, "age"));
  EXPECT_FALSE(part_unchanged(after1, after2, "gender"));
  EXPECT_FALSE(part_unchanged(after1, after2, "backbone"));
  EXPECT_TRUE(part_unchanged(after2, after3, "gender"));  // step 2 trains Age
  EXPECT_FALSE(part_unchanged(after2, after3, "age"));

  train(config(dir / "split", 2), false);
  TrainConfig more = TrainConfig::from_json(nlohmann::json::parse(slurp(dir / "split" / "config.json")));
  more.steps = 4;
  train(more, true);
  EXPECT_EQ(slurp(dir / "straight" / "model-4.safetensors"), slurp(dir / "split" / "model-4.safetensors"));
  EXPECT_EQ(slurp(dir / "straight" / "state-4.safetensors"), slurp(dir / "split" / "state-4.safetensors"));

  TrainConfig sum = config(dir / "sum", 2);
  sum.multi_mode = "sum";
  train(sum, false);
  for (const auto& row : csv_rows(dir / "sum" / "loss_debug.csv"))
    for (size_t t = 0; t < 3; ++t) EXPECT_FALSE(row[4 + t].empty());
}

// ---- validation as the original printed it ---------------------------------------------------

TEST(TrainValidation, PrintsAndRecordsDistancesGapProgressTopNAndConfusion) {
  ScratchDir dir;
  const std::string pack = labelled_pack(dir);
  TrainConfig config = tiny_config(pack, dir / "run", 4);
  config.task = "multi";
  config.valid_sets = {pack};
  config.valid_every = 2;
  config.valid_pairs = 200;
  config.checkpoint_every = 0;
  ::testing::internal::CaptureStdout();
  train(config, false);
  const std::string printed = ::testing::internal::GetCapturedStdout();
  for (const char* expected : {"same ", "different ", "gap ", "steps without progress", "top-3", "female"})
    EXPECT_NE(printed.find(expected), std::string::npos) << expected << " missing from:\n" << printed;

  // valid.csv: step, task, figure, value.
  std::map<int64_t, std::map<std::string, std::map<std::string, double>>> figures;
  for (const auto& row : csv_rows(dir / "run" / "valid.csv"))
    figures[std::stoll(row[0])][row[1]][row[2]] = std::stod(row[3]);
  ASSERT_EQ(figures.size(), 2u);  // steps 2 and 4
  for (const char* name : {"same_distance", "different_distance", "gap", "steps_without_progress"})
    EXPECT_TRUE(figures[2]["FR"].count(name)) << name;
  // Steps without progress: since the best gap so far.
  EXPECT_EQ(figures[2]["FR"]["steps_without_progress"], 0);
  EXPECT_EQ(figures[4]["FR"]["steps_without_progress"], figures[4]["FR"]["gap"] > figures[2]["FR"]["gap"] ? 0 : 2);
  // Gender and age: the accuracies agree with the confusion matrix recorded beside them.
  for (int64_t step : {2, 4})
    for (const std::string task : {"Gender", "Age"}) {
      std::map<std::string, double>& f = figures[step][task];
      const int classes = task == "Gender" ? 2 : 7;
      double total = 0, diagonal = 0, class_accuracy_sum = 0;
      int present = 0;
      for (int t = 0; t < classes; ++t) {
        double row = 0;
        for (int p = 0; p < classes; ++p) {
          const std::string cell = "confusion_" + std::to_string(t) + "_" + std::to_string(p);
          ASSERT_TRUE(f.count(cell)) << task << " " << cell;
          row += f[cell];
        }
        const double correct = f["confusion_" + std::to_string(t) + "_" + std::to_string(t)];
        total += row;
        diagonal += correct;
        if (row > 0) class_accuracy_sum += correct / row, ++present;
      }
      EXPECT_EQ(total, f["samples"]) << task;
      EXPECT_NEAR(f["accuracy"], diagonal / total, 1e-9) << task;
      EXPECT_NEAR(f["average_accuracy"], class_accuracy_sum / present, 1e-9) << task;
      if (task == "Age") {
        EXPECT_GE(f["top2_accuracy"], f["accuracy"]);
        EXPECT_GE(f["top3_accuracy"], f["top2_accuracy"]);
      }
    }
}

// ---- Ctrl-C -----------------------------------------------------------------------------------

int64_t latest_step(const fs::path& run) { return std::stoll(slurp(run / "latest")); }

// Ctrl-C saves a checkpoint at the step it stopped and exits with 130, as shells expect of an
// interrupted program (it exited 0, like a finished run); SIGTERM (a batch system's stop) does the
// same with 143. Each resume continues with every step logged once.
TEST(TrainInterrupt, SigintAndSigtermSaveACheckpointExitWith128PlusTheSignalAndResume) {
  ScratchDir dir;
  const std::string pack = synthetic_pack(dir);
  const fs::path run = dir / "run";
  std::vector<std::string> args = testing::tiny_train_args(pack, run);
  for (const char* setting : {"--steps", "100000", "--log-every", "1", "--checkpoint-every", "100000"})
    args.push_back(setting);
  const std::vector<std::string> resume = {"train", "--resume", run.string(), "--steps", "100000"};
  int64_t stopped = 0;
  for (const auto& [signal, status] : {std::pair{SIGINT, 130}, std::pair{SIGTERM, 143}}) {
    // Wait for a few more logged steps (the loop is running and has its handler), then signal.
    testing::Background trainer(signal == SIGINT ? args : resume, dir / "out");
    ASSERT_TRUE(testing::wait_until([&] { return int64_t(csv_rows(run / "loss_debug.csv").size()) >= stopped + 3; }))
        << slurp(dir / "out");
    trainer.signal(signal);
    EXPECT_EQ(trainer.wait(), status) << slurp(dir / "out");
    EXPECT_NE(slurp(dir / "out").find("interrupted by SIG"), std::string::npos) << slurp(dir / "out");
    // The checkpoint is at the step the run stopped: every logged step is in it.
    stopped = latest_step(run);
    EXPECT_EQ(int64_t(csv_rows(run / "loss_debug.csv").size()), stopped);
    EXPECT_TRUE(fs::exists(run / ("model-" + std::to_string(stopped) + ".safetensors")));
  }

  const std::string resumed = cuface::testing::cuface_binary() + " train --resume " + run.string() + " --steps " +
                              std::to_string(stopped + 2) + " > " + (dir / "resumed").string() + " 2>&1";
  const int raw = std::system(resumed.c_str());
  ASSERT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << slurp(dir / "resumed");
  EXPECT_NE(slurp(dir / "resumed").find("at step " + std::to_string(stopped)), std::string::npos)
      << slurp(dir / "resumed");
  EXPECT_EQ(latest_step(run), stopped + 2);
  const auto rows = csv_rows(run / "loss_debug.csv");
  ASSERT_EQ(int64_t(rows.size()), stopped + 2);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i][0], std::to_string(i + 1));  // no step twice, none missing
  EXPECT_NE(cuface::testing::cuface(dir, "train --help").out.find("exits with status 130"), std::string::npos);
}

// ---- frozen backbone ---------------------------------------------------------------------------

TEST(FrozenBackbone, NoBackboneGradientIsComputed) {
  FaceModelOptions options;
  options.arch = "tiny";
  options.gender = true;
  FaceModel model(options);
  model.backbone().set_frozen(true);
  Context ctx(Device::CPU);
  for (NamedParameter& np : model.backbone().named_parameters())
    if (np.parameter->trainable) testing::poison(np.parameter->grad);
  model.set_step(0);
  model.train_step(ctx, testing::random_tensor({4, 32, 32, 3}, 9), {{Task::Gender, labels_of({0, 1, 1, 0}), 1.0f}},
                   false, true);
  // Untouched: still NaN everywhere (a computed or zeroed gradient would have overwritten or added to it).
  for (NamedParameter& np : model.backbone().named_parameters()) {
    if (!np.parameter->trainable) continue;
    const Tensor& g = np.parameter->grad;
    for (int64_t i = 0; i < g.numel(); ++i) ASSERT_TRUE(std::isnan(g.data<float>()[i])) << np.name << "[" << i << "]";
  }
  double head = 0;
  for (NamedParameter& np : model.named_parameters())
    if (part_of(np.name) == "gender" && np.parameter->trainable)
      for (int64_t i = 0; i < np.parameter->grad.numel(); ++i) head += std::abs(np.parameter->grad.data<float>()[i]);
  EXPECT_GT(head, 0);
  EXPECT_TRUE(std::isfinite(head));
}

TEST(FrozenBackbone, TrainingLeavesTheBackboneBitIdentical) {
  ScratchDir dir;
  TrainConfig config = tiny_config(labelled_pack(dir), dir / "run", 3);
  config.task = "Gender";
  config.freeze_backbone = true;
  train(config, false);
  // The untrained backbone of the same seed, weights and BN running statistics.
  ResNet fresh(resnet_spec("tiny"), config.seed);
  const auto saved = checkpoint(dir / "run" / "model-3.safetensors");
  for (const auto& [name, value] : export_state(fresh)) {
    ASSERT_TRUE(saved.count(name)) << name;
    EXPECT_EQ(0, std::memcmp(value.raw(), saved.at(name).raw(), value.bytes())) << name;
  }
  FaceModelOptions options;
  options.arch = "tiny";
  options.gender = true;
  options.seed = config.seed;
  FaceModel untrained(options);
  const auto initial = export_state(untrained);
  bool head_moved = false;
  for (const auto& [name, value] : initial)
    if (name == "gender.head.weight") head_moved = std::memcmp(value.raw(), saved.at(name).raw(), value.bytes()) != 0;
  EXPECT_TRUE(head_moved);
}

// ---- per-part defaults ---------------------------------------------------------------------------

TEST(TrainDefaults, BranchesDropoutDecayAndTaskLearningRatesAsTheOriginal) {
  const FaceModelOptions options;
  EXPECT_FLOAT_EQ(options.embedding_dropout, 0.4f);
  EXPECT_FLOAT_EQ(options.head_dropout, 0.5f);
  EXPECT_EQ(options.gender_hidden, std::vector<int64_t>({512}));
  EXPECT_EQ(options.age_hidden, std::vector<int64_t>({512, 512}));
  const TrainConfig config;
  for (double wd : {config.wd_backbone, config.wd_fr, config.wd_gender, config.wd_age}) EXPECT_DOUBLE_EQ(wd, 5e-4);
  EXPECT_EQ(config.multi_mode, "sum");
  EXPECT_EQ(config.accumulate, 1);

  // The built branches: gender FC 512, age FC 512 -> FC 512, heads on them.
  FaceModelOptions built;
  built.arch = "tiny";
  built.gender = true;
  built.age_classes = 7;
  FaceModel model(built);
  std::map<std::string, Shape> shapes;
  for (NamedParameter& np : model.named_parameters()) shapes[np.name] = np.parameter->value.shape();
  const int64_t features = model.backbone().features();
  EXPECT_EQ(shapes.at("gender.hidden.1.weight"), Shape({512, features}));
  EXPECT_FALSE(shapes.count("gender.hidden.3.weight"));
  EXPECT_EQ(shapes.at("age.hidden.1.weight"), Shape({512, features}));
  EXPECT_EQ(shapes.at("age.hidden.3.weight"), Shape({512, 512}));

  // Each part decays with its own value: one update with zero gradients, lr 1, no momentum,
  // scales every weight by 1 - wd of its part (biases and BN parameters: none).
  WeightDecay decay{0.1, 0.2, 0.3, 0.4};
  std::vector<NamedParameter> all = model.named_parameters();
  const std::map<std::string, Tensor> before = trainable_values(model);
  Context ctx(Device::CPU);
  SgdOptimizer optimizer(all, 0.0, decay);
  optimizer.zero_grad(ctx);
  optimizer.step(ctx, 1.0);
  const std::map<std::string, double> expected{{"backbone", 0.1}, {"fr", 0.2}, {"gender", 0.3}, {"age", 0.4}};
  for (NamedParameter& np : all) {
    if (!np.parameter->trainable) continue;
    const double wd = np.parameter->decay ? expected.at(part_of(np.name)) : 0.0;
    const float w0 = before.at(np.name).data<float>()[0], w1 = np.parameter->value.data<float>()[0];
    EXPECT_NEAR(w1, w0 * (1 - wd), 1e-6 + 1e-6 * std::abs(w0)) << np.name;
  }
}

TEST(TrainDefaults, EachTaskStartsAtItsOwnLearningRate) {
  ScratchDir dir;
  const std::string pack = labelled_pack(dir);
  for (const std::string task : {"FR", "Gender", "Age"}) {
    TrainConfig config = tiny_config(pack, dir / task, 1);
    config.task = task;
    config.lr = 0.01;
    config.lr_fr = 0.02;
    config.lr_gender = 0.03;
    config.lr_age = 0.04;
    train(config, false);
    const double expected = task == "FR" ? 0.02 : task == "Gender" ? 0.03 : 0.04;
    EXPECT_DOUBLE_EQ(std::stod(csv_rows(dir / task / "loss_debug.csv").at(0).at(2)), expected) << task;
  }
}

}  // namespace
}  // namespace cuface
