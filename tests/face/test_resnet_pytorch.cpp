// The whole ResNet backbone against PyTorch/torchvision (scripts/make_resnet_fixture.py): parameter
// names and shapes, training-mode forward and every parameter gradient, the running statistics one
// training step leaves, evaluation-mode forward; and a full torchvision ResNet-50 state_dict loaded
// as is and run in evaluation mode.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "common/reference.h"
#include "engine/context.h"
#include "engine/safetensors.h"
#include "face/model/resnet.h"
#include "face/train/checkpoint.h"
#include "kernels/conv.h"
#include "scratch_dir.h"
#include "common/source_dir.h"

namespace cuface {
namespace {

using testing::relative_error;

// The tensors of `file` whose names start with `prefix`, the prefix removed.
std::map<std::string, Tensor> with_prefix(const SafetensorsFile& file, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, tensor] : file.tensors)
    if (name.rfind(prefix, 0) == 0) out.emplace(name.substr(prefix.size()), tensor);
  return out;
}

SafetensorsFile tiny_fixture() {
  return load_safetensors(cuface::testing::fixture_path("resnet_tiny.safetensors"));
}

TEST(ResNetPytorch, TinyNamesAndShapesAreTorchvisions) {
  const std::map<std::string, Tensor> state = with_prefix(tiny_fixture(), "state.");
  ResNet model(resnet_spec("tiny"), 0);
  std::set<std::string> ours, theirs;
  for (const auto& [name, tensor] : export_state(model)) {  // OIHW, as PyTorch
    ours.insert(name);
    auto it = state.find(name);
    if (it == state.end()) continue;
    EXPECT_EQ(tensor.shape(), it->second.shape()) << name << ": ours " << tensor.str() << ", torch " << it->second.str();
    EXPECT_EQ(tensor.dtype(), it->second.dtype()) << name;
  }
  for (const auto& [name, tensor] : state) theirs.insert(name);
  EXPECT_EQ(ours, theirs);
  EXPECT_TRUE(theirs.count("layer2.0.downsample.1.num_batches_tracked"));
  EXPECT_EQ(model.features(), 256);
}

TEST(ResNetPytorch, TinyTrainingStepMatchesTorch) {
  const SafetensorsFile file = tiny_fixture();
  const std::map<std::string, Tensor> state = with_prefix(file, "state.");
  const std::map<std::string, Tensor> grads = with_prefix(file, "grad.");
  const std::map<std::string, Tensor> after = with_prefix(file, "after.");
  Context ctx(Device::CPU);
  ResNet model(resnet_spec("tiny"), 0);
  const LoadReport report = load_state(model, state);
  ASSERT_TRUE(report.exact()) << report.summary();

  model.set_training(true);
  model.zero_grad(ctx);
  const Tensor y = model.forward(ctx, file.tensors.at("x"));
  ASSERT_EQ(y.shape(), file.tensors.at("y_train").shape());
  EXPECT_LT(relative_error(y, file.tensors.at("y_train")), 1e-4);
  model.backward(ctx, file.tensors.at("r"));

  size_t trainable = 0;
  for (NamedParameter& np : model.named_parameters()) {
    const Parameter& p = *np.parameter;
    if (p.trainable) {
      ++trainable;
      auto it = grads.find(np.name);
      ASSERT_NE(it, grads.end()) << np.name;
      const Tensor grad = p.ohwi ? ohwi_to_oihw(p.grad) : p.grad;
      EXPECT_LT(relative_error(grad, it->second), 1e-4) << "gradient of " << np.name;
    } else {
      auto it = after.find(np.name);
      ASSERT_NE(it, after.end()) << np.name;
      if (p.value.dtype() == DType::I32)
        EXPECT_EQ(p.value.data<int32_t>()[0], it->second.data<int32_t>()[0]) << np.name;
      else
        EXPECT_LT(relative_error(p.value, it->second), 1e-4) << "running statistic " << np.name;
    }
  }
  EXPECT_EQ(trainable, grads.size());
}

TEST(ResNetPytorch, TinyEvaluationMatchesTorch) {
  const SafetensorsFile file = tiny_fixture();
  Context ctx(Device::CPU);
  ResNet model(resnet_spec("tiny"), 0);
  const LoadReport report = load_state(model, with_prefix(file, "state."));
  ASSERT_TRUE(report.exact()) << report.summary();
  model.set_training(false);
  const Tensor y = model.forward(ctx, file.tensors.at("x"));
  EXPECT_LT(relative_error(y, file.tensors.at("y_eval")), 1e-4);
  // Evaluation leaves the running statistics as they were.
  for (const auto& [name, value] : export_state(model)) {
    if (name.find("running_") == std::string::npos) continue;
    EXPECT_EQ(relative_error(value, file.tensors.at("state." + name)), 0.0) << name;
  }
}

// A full torchvision.models.resnet50 (random weights, generated at test time: 100 MB is no fixture).
TEST(ResNetPytorch, Resnet50StateDictLoadsAndMatchesTorch) {
  if (std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with torch and torchvision is not available";
  testing::ScratchDir dir;
  const std::string command = "/usr/bin/python3 " + cuface::testing::source_dir() +
                              "/scripts/make_resnet_fixture.py --full " + dir.path().string() + " >/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  Context ctx(Device::CPU);
  ResNet model(resnet_spec("resnet50"), 0);
  const LoadReport report = load_state(model, load_safetensors((dir / "resnet50.safetensors").string()).tensors);
  EXPECT_TRUE(report.missing.empty()) << report.summary();
  EXPECT_TRUE(report.mismatched.empty()) << report.summary();
  EXPECT_EQ(std::set<std::string>(report.unexpected.begin(), report.unexpected.end()),
            (std::set<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(report.matched.size(), 320u - 2u);

  const SafetensorsFile io = load_safetensors((dir / "resnet50_io.safetensors").string());
  model.set_training(false);
  const Tensor y = model.forward(ctx, io.tensors.at("x"));
  ASSERT_EQ(y.shape(), io.tensors.at("y").shape());
  EXPECT_LT(relative_error(y, io.tensors.at("y")), 1e-4);
}

}  // namespace
}  // namespace cuface
