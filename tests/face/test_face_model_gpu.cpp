// FaceModel on a GPU against the same model on the CPU: one multi-task training step (backbone, the
// three branches, their heads, the weighted sum of the branches' gradients into the backbone) and the
// evaluation outputs, in fp32 and with a bf16 backbone (bf16 images, as the trainer and the embedder
// give it); the whole training step replayed from a CUDA graph against the same steps run eagerly,
// and a replayed step with a non-finite loss. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "face/model/face_model.h"
#include "face/train/optimizer.h"
#include "face/train/step_graph.h"
#include "kernels/elementwise.h"

namespace cuface {
namespace {

Tensor labels_of(const std::vector<int32_t>& values, Device device) {
  Tensor t = Tensor::empty({int64_t(values.size())}, DType::I32, Device::CPU);
  std::copy(values.begin(), values.end(), t.data<int32_t>());
  return t.to(device);
}

std::vector<TaskLabels> tasks_on(Device device) {
  // Gender weighted 0.5: the scaled branch gradient is part of what is compared.
  return {{Task::FR, labels_of({0, 3, 7, 9, 3, 1}, device), 1.0f},
          {Task::Gender, labels_of({0, 1, 1, -1, 0, 1}, device), 0.5f},
          {Task::Age, labels_of({2, 6, 0, 4, -1, 3}, device), 1.0f}};
}

// ||got - want|| / max(||want||, 1e-2): a Linear bias before a BatchNorm has a gradient of rounding
// noise only (the normalisation removes the mean), which a plain relative error would compare. Here
// that noise is up to ~1e-6 (embedding.1.bias; CPU runs with weights 1e-6 apart differ by 1.6e-6 in
// it), while the smallest real gradient (gender.hidden.2.bias) has norm 0.03.
double error(const std::vector<double>& g, const std::vector<double>& w) {
  if (g.size() != w.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) diff += (g[i] - w[i]) * (g[i] - w[i]), norm += w[i] * w[i];
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-2);
}
double error(const Tensor& got, const Tensor& want) { return error(testing::to_doubles(got), testing::to_doubles(want)); }

// The gradients: fp32 per parameter. bf16 only as one vector of all of them: bf16 operands move
// single gradients of this network by far more than any useful bound. Emulated on the CPU (weights
// rounded to bf16, the same bf16 images), the losses move by 2e-2, the embeddings by 1.5e-2, the
// running statistics by 2e-2, but bn1.weight's gradient by 1.2, every backbone gradient by 0.2-0.5
// and the whole gradient by 0.31 (0.37 with weights perturbed twice as much; fp32-sized changes of
// 1e-6 move it by 2e-5 only). The GPU also rounds activations, so the whole bf16 gradient is only
// held to be nearer the CPU's than zero is: a missing, zeroed, transposed or sign-flipped gradient
// fails; smaller errors are the fp32 case's (the bf16 layers are compared one by one in tests/layers).
struct ModelCase {
  Precision precision;
  DType images;
  double bound;           // relative error of losses, parameter values and outputs; fp32: of each gradient
  double gradient_bound;  // relative error of all the gradients together
};

class FaceModelCuda : public ::testing::TestWithParam<ModelCase> {};

// The tiny backbone with all three branches, small enough for the emulator.
FaceModelOptions three_task_options() {
  FaceModelOptions options;
  options.arch = "tiny";
  options.identities = 10;
  options.embedding_size = 16;
  options.gender = true;
  options.gender_hidden = {8};
  options.age_classes = 7;
  options.age_hidden = {8, 8};
  options.seed = 5;
  return options;
}

TEST_P(FaceModelCuda, TrainStepAndOutputsMatchTheCpuModel) {
  CUFACE_REQUIRE_GPU();
  const ModelCase mc = GetParam();
  const FaceModelOptions options = three_task_options();
  FaceModel on_cpu(options), on_gpu(options);
  on_gpu.to(Device::CUDA);
  Context cpu(Device::CPU), gpu(Device::CUDA);
  gpu.set_precision(mc.precision);

  Tensor images = testing::random_tensor({6, 32, 32, 3}, 11);
  const Tensor gpu_images = testing::upload(images, mc.images);  // rounds `images` to bf16 too
  on_cpu.set_step(0);
  on_gpu.set_step(0);
  const std::vector<HeadStats> want = on_cpu.train_step(cpu, images, tasks_on(Device::CPU), true, true);
  const std::vector<HeadStats> got = on_gpu.train_step(gpu, gpu_images, tasks_on(Device::CUDA), true, true);
  gpu.synchronize();
  ASSERT_EQ(got.size(), want.size());
  for (size_t t = 0; t < want.size(); ++t) {
    EXPECT_TRUE(std::isfinite(got[t].loss)) << t;
    EXPECT_NEAR(got[t].loss, want[t].loss, mc.bound * std::abs(want[t].loss)) << t;
    EXPECT_EQ(got[t].labelled, want[t].labelled) << t;
  }
  std::vector<NamedParameter> cpu_params = on_cpu.named_parameters(), gpu_params = on_gpu.named_parameters();
  ASSERT_EQ(cpu_params.size(), gpu_params.size());
  std::vector<double> all_cpu, all_gpu;  // every gradient, one vector
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    ASSERT_EQ(gpu_params[i].name, cpu_params[i].name);
    const Parameter& c = *cpu_params[i].parameter;
    const Parameter& g = *gpu_params[i].parameter;
    if (c.value.dtype() == DType::F32) {  // running statistics too (num_batches_tracked is i32)
      EXPECT_LT(error(g.value, c.value), mc.bound) << cpu_params[i].name;
    }
    if (c.trainable) {
      const std::vector<double> want = testing::to_doubles(c.grad), got = testing::to_doubles(g.grad);
      EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](double v) { return std::isfinite(v); })) << cpu_params[i].name;
      if (mc.precision == Precision::FP32) {
        EXPECT_LT(error(got, want), mc.bound) << cpu_params[i].name;
      }
      all_cpu.insert(all_cpu.end(), want.begin(), want.end());
      all_gpu.insert(all_gpu.end(), got.begin(), got.end());
    }
  }
  EXPECT_LT(error(all_gpu, all_cpu), mc.gradient_bound);

  const Tensor embedding = on_gpu.embed(gpu, gpu_images);
  const Tensor age = on_gpu.classify(gpu, Task::Age, gpu_images);
  gpu.synchronize();
  EXPECT_EQ(embedding.dtype(), DType::F32);  // whatever the backbone computed in
  EXPECT_EQ(age.dtype(), DType::F32);
  EXPECT_LT(testing::relative_error(embedding, on_cpu.embed(cpu, images)), mc.bound);
  EXPECT_LT(testing::relative_error(age, on_cpu.classify(cpu, Task::Age, images)), mc.bound);
}

INSTANTIATE_TEST_SUITE_P(Precisions, FaceModelCuda,
                         ::testing::Values(ModelCase{Precision::FP32, DType::F32, 1e-3, 1e-3},
                                           ModelCase{Precision::BF16, DType::BF16, 8e-2, 1.0}),
                         [](const ::testing::TestParamInfo<ModelCase>& info) {
                           return std::string(precision_name(info.param.precision));
                         });

// The whole training step as one CUDA graph (face/train/step_graph.h): one model trains five steps
// eagerly, as the trainer's eager path runs them (set_step, train_step, then the SGD update); its twin
// trains them through a StepGraph: the first eagerly, the second captured and replayed, the third
// replayed, the fourth (a smaller batch) eagerly again, the fifth replayed. Dropout and Partial FC's
// sampling draw per step (with the step read from the device) and the learning rate changes every
// step (a warm-up, read from the device): losses and weights equal the eager run's, in fp32 and in
// bf16 (bf16 images and backbone: the same kernels on the same data, so the same 1e-5 bound).
class FaceModelGraphCuda : public ::testing::TestWithParam<Precision> {};

FaceModelOptions graph_options() {
  FaceModelOptions options = three_task_options();
  options.margin.sample_rate = 0.7f;  // 7 of the 10 classes per step: the positives and random others
  return options;
}

struct GraphRun {
  Context ctx{Device::CUDA};
  FaceModel model{graph_options()};
  std::unique_ptr<SgdOptimizer> sgd;
  explicit GraphRun(Precision precision) {
    model.to(Device::CUDA);
    ctx.set_deterministic(true);  // two GPU runs compared: no run-to-run variation of cuDNN's algorithms
    ctx.set_precision(precision);
    std::vector<NamedParameter> trainable;
    for (const NamedParameter& p : model.named_parameters())
      if (p.parameter->trainable) trainable.push_back(p);
    sgd = std::make_unique<SgdOptimizer>(trainable, 0.9, WeightDecay{});
  }
};

struct StepInput {
  Tensor images;
  std::vector<TaskLabels> tasks;
  double lr;
};

std::vector<StepInput> graph_steps(Context& ctx, DType image_type) {
  std::vector<StepInput> steps;
  for (int step = 0; step < 5; ++step) {
    std::vector<int32_t> fr{step, 3, 7, 9, 3, 1}, gender{0, 1, step % 2, -1, 0, 1};
    if (step == 3) fr.resize(4), gender.resize(4);  // another batch shape: an eager step between replays
    const int64_t rows = int64_t(fr.size());
    steps.push_back({cast_to(ctx, testing::random_tensor({rows, 32, 32, 3}, uint64_t(20 + step)).to(Device::CUDA),
                             image_type),
                     {{Task::FR, labels_of(fr, Device::CUDA), 1.0f},
                      {Task::Gender, labels_of(gender, Device::CUDA), 0.5f}},
                     0.05 * double(step + 1) / 5});  // a warm-up: the LR of every step differs
  }
  return steps;
}

TEST_P(FaceModelGraphCuda, TheWholeStepReplaysAsEagerSteps) {
  CUFACE_REQUIRE_GPU();
  const Precision precision = GetParam();
  GraphRun eager(precision), graphed(precision);
  ASSERT_GT(graph_options().embedding_dropout, 0.0f) << "the masks must vary per step";
  const std::vector<StepInput> steps = graph_steps(eager.ctx, precision == Precision::BF16 ? DType::BF16 : DType::F32);
  std::vector<std::vector<HeadStats>> want, got;
  for (size_t step = 0; step < steps.size(); ++step) {
    eager.model.set_step(step);
    want.push_back(eager.model.train_step(eager.ctx, steps[step].images, steps[step].tasks, true, true));
    eager.sgd->step(eager.ctx, steps[step].lr);
  }
  // Each step's losses read one step late, as the trainer reads them: after the next step is queued.
  StepGraph graph(graphed.ctx, graphed.model, *graphed.sgd);
  for (size_t step = 0; step < steps.size(); ++step) {
    const StepInput& in = steps[step];
    graph.queue_step(graphed.ctx, in.images, in.tasks, int64_t(step), in.lr);
    if (step >= 1) got.push_back(graph.wait_stats(int64_t(step) - 1));
    ASSERT_EQ(graph.replaying(), step >= 1) << graph.failure();  // captured at the second step
  }
  got.push_back(graph.wait_stats(int64_t(steps.size()) - 1));
  EXPECT_THROW(graph.wait_stats(int64_t(steps.size()) - 3), Error) << "only the last two steps are kept";
  for (size_t step = 0; step < steps.size(); ++step)
    for (size_t t = 0; t < 2; ++t) {
      EXPECT_NEAR(got[step][t].loss, want[step][t].loss, 1e-5 * std::abs(want[step][t].loss)) << step << " " << t;
      EXPECT_EQ(got[step][t].labelled, want[step][t].labelled);
    }
  const std::vector<NamedParameter> a = eager.model.named_parameters(), b = graphed.model.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].parameter->value.dtype() != DType::F32) continue;  // num_batches_tracked
    EXPECT_LT(testing::relative_error(b[i].parameter->value, a[i].parameter->value), 1e-5) << a[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, FaceModelGraphCuda, ::testing::Values(Precision::FP32, Precision::BF16),
                         [](const ::testing::TestParamInfo<Precision>& info) {
                           return std::string(precision_name(info.param));
                         });

// A replayed step whose FR loss is not finite (a label past the last class, which the GPU's margin
// kernel turns into a NaN loss; NaN images would not do, ReLU turns NaN into 0) leaves the weights and
// momentum as they were before it (the update skipped on the device, as the eager trainer checks the
// loss before it updates), and so does the good step queued behind it: the host reads each step's
// loss one step late, after the next step is queued, and stops at the non-finite one with the
// weights of before it (the flag is sticky).
TEST(StepGraphCuda, ANonFiniteLossLeavesTheWeightsAsTheyWere) {
  CUFACE_REQUIRE_GPU();
  GraphRun run(Precision::FP32);
  std::vector<StepInput> steps = graph_steps(run.ctx, DType::F32);
  steps[2].tasks[0].labels = labels_of({10, 3, 7, 9, 3, 1}, Device::CUDA);  // 10 classes: 0 .. 9
  steps[3] = steps[1];  // the graph's batch shape again

  StepGraph graph(run.ctx, run.model, *run.sgd);
  auto weights = [&] {
    run.ctx.synchronize();
    std::vector<std::vector<double>> values;
    for (const NamedParameter& p : run.model.named_parameters())
      if (p.parameter->trainable) values.push_back(testing::to_doubles(p.parameter->value));
    for (const auto& [name, momentum] : run.sgd->state()) values.push_back(testing::to_doubles(momentum));
    return values;
  };
  std::vector<std::vector<double>> before, after_first;
  for (size_t step = 0; step < 4; ++step) {
    if (step == 1) after_first = weights();
    if (step == 2) before = weights();
    graph.queue_step(run.ctx, steps[step].images, steps[step].tasks, int64_t(step), 0.05);
    ASSERT_TRUE(graph.replaying() || step == 0) << graph.failure();
    if (step >= 1) {
      const std::vector<HeadStats> stats = graph.wait_stats(int64_t(step) - 1);
      EXPECT_EQ(std::isfinite(stats[0].loss), step - 1 != 2) << "step " << step - 1;
    }
  }
  EXPECT_TRUE(std::isfinite(graph.wait_stats(3)[0].loss)) << "the step behind the NaN one";
  EXPECT_FALSE(before == after_first) << "the good step before the NaN one did not update";
  EXPECT_TRUE(weights() == before) << "the step with a NaN loss, or the one queued behind it, updated the weights";
}

}  // namespace
}  // namespace cuface
