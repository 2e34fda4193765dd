// FaceModel on a GPU against the same model on the CPU: one multi-task training step (backbone, the
// three branches, their heads, the weighted sum of the branches' gradients into the backbone) and the
// evaluation outputs, in fp32 and with a bf16 backbone (bf16 images, as the trainer and the embedder
// give it). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "face/model/face_model.h"

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

// ||got - want|| / max(||want||, 1e-4): a Linear bias before a BatchNorm has a gradient of rounding
// noise only (the normalisation removes the mean), which a plain relative error would compare.
double error(const Tensor& got, const Tensor& want) {
  const std::vector<double> g = testing::to_doubles(got), w = testing::to_doubles(want);
  if (g.size() != w.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) diff += (g[i] - w[i]) * (g[i] - w[i]), norm += w[i] * w[i];
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-4);
}

struct ModelCase {
  Precision precision;
  DType images;
  double bound;  // norm-wise relative error of losses, gradients and outputs
};

class FaceModelCuda : public ::testing::TestWithParam<ModelCase> {};

TEST_P(FaceModelCuda, TrainStepAndOutputsMatchTheCpuModel) {
  CUFACE_REQUIRE_GPU();
  const ModelCase mc = GetParam();
  FaceModelOptions options;
  options.arch = "tiny";
  options.identities = 10;
  options.embedding_size = 16;
  options.gender = true;
  options.gender_hidden = {8};
  options.age_classes = 7;
  options.age_hidden = {8, 8};
  options.seed = 5;
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
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    ASSERT_EQ(gpu_params[i].name, cpu_params[i].name);
    const Parameter& c = *cpu_params[i].parameter;
    const Parameter& g = *gpu_params[i].parameter;
    if (c.value.dtype() == DType::F32) {  // running statistics too (num_batches_tracked is i32)
      EXPECT_LT(error(g.value, c.value), mc.bound) << cpu_params[i].name;
    }
    if (c.trainable) {
      EXPECT_LT(error(g.grad, c.grad), mc.bound) << cpu_params[i].name;
    }
  }

  const Tensor embedding = on_gpu.embed(gpu, gpu_images);
  const Tensor age = on_gpu.classify(gpu, Task::Age, gpu_images);
  gpu.synchronize();
  EXPECT_EQ(embedding.dtype(), DType::F32);  // whatever the backbone computed in
  EXPECT_EQ(age.dtype(), DType::F32);
  EXPECT_LT(testing::relative_error(embedding, on_cpu.embed(cpu, images)), mc.bound);
  EXPECT_LT(testing::relative_error(age, on_cpu.classify(cpu, Task::Age, images)), mc.bound);
}

INSTANTIATE_TEST_SUITE_P(Precisions, FaceModelCuda,
                         ::testing::Values(ModelCase{Precision::FP32, DType::F32, 1e-3},
                                           ModelCase{Precision::BF16, DType::BF16, 8e-2}),
                         [](const ::testing::TestParamInfo<ModelCase>& info) {
                           return std::string(precision_name(info.param.precision));
                         });

}  // namespace
}  // namespace cuface
