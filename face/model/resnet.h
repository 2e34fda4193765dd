// ResNet V1 backbones in torchvision's topology (He et al. 2016, "ResNet v1.5"): the stride of a
// stage's first block sits on its 3x3 convolution, a 1x1 projection (conv + BN) carries the shortcut
// whenever the shape changes, and parameter names follow torchvision's state_dict exactly
// ("conv1.weight", "bn1.running_mean", "layer3.4.conv2.weight", "layer1.0.downsample.0.weight",
// "layer1.0.downsample.1.weight", ...), so a torchvision ResNet saved as safetensors loads as is.
//
//   image [N, H, W, 3] -> conv1 7x7/2 -> bn1+relu -> maxpool 3x3/2 -> layer1..layer4 -> mean over H, W
//   -> features [N, 4 * 8 * width] (bottleneck) or [N, 8 * width] (basic)
//
// The spatial size need not be a multiple of 32: 224 (torchvision) ends in a 7x7 feature map, 112
// (aligned faces) in a 4x4 one whose last row/column is computed partly from padding, as in PyTorch.
#pragma once
#include <array>
#include <memory>
#include <string>

#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/global_avg_pool.h"
#include "layers/layer.h"
#include "layers/max_pool2d.h"

namespace cuface {

struct ResNetSpec {
  bool bottleneck = true;             // Bottleneck (1x1, 3x3, 1x1; expansion 4) or BasicBlock (3x3, 3x3)
  std::array<int, 4> blocks{3, 4, 6, 3};
  int64_t width = 64;                 // channels of the stem and of layer1's 3x3 convolutions
  float bn_momentum = 0.1f;           // PyTorch convention (the original's TF decay 0.997 = 0.003)
};

// resnet18, resnet34, resnet50, resnet100 (bottleneck blocks [3, 13, 30, 3]), and tiny (bottleneck,
// width 8, one block per stage: the same code at a size CPU tests train in seconds).
ResNetSpec resnet_spec(const std::string& arch);

// Derives distinct, reproducible initialisation seeds for the layers of a model.
class SeedSequence {
 public:
  explicit SeedSequence(uint64_t seed) : seed_(seed) {}
  uint64_t next() { return seed_ * 0x9E3779B97F4A7C15ull + ++count_; }

 private:
  uint64_t seed_;
  uint64_t count_ = 0;
};

// A residual block: the main branch, the optional projection shortcut, and the join relu(main + shortcut).
class ResidualBlock : public Layer {
 public:
  // Bottleneck: in -> width (1x1) -> width (3x3, stride) -> 4 * width (1x1). Basic: in -> width (3x3,
  // stride) -> width (3x3).
  ResidualBlock(bool bottleneck, int64_t in_channels, int64_t width, int64_t stride, float bn_momentum,
                SeedSequence& seeds);
  const char* type() const override { return bottleneck_ ? "Bottleneck" : "BasicBlock"; }
  int64_t out_channels() const { return out_channels_; }

  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) override;
  void set_training(bool training) override;
  void set_frozen(bool frozen) override;
  void visit(const std::function<void(Layer&)>& f) override;
  bool is_container() const override { return true; }

 private:
  bool bottleneck_;
  int64_t out_channels_;
  Sequential main_;  // conv1, bn1(+relu), conv2, [bn2(+relu), conv3]: named as torchvision
  // The main branch's last BatchNorm ("bn3", or "bn2" in a basic block) with the join fused in:
  // relu(bn(main) + shortcut).
  BatchNorm join_;
  std::unique_ptr<Sequential> downsample_;  // "downsample.0" conv 1x1/stride, "downsample.1" BN
};

// conv1, bn1 (+relu), maxpool, layer1..layer4, avgpool, in order.
class ResNet : public Sequential {
 public:
  ResNet(const ResNetSpec& spec, uint64_t seed);
  const char* type() const override { return "ResNet"; }
  int64_t features() const { return features_; }

  // [N, H, W, 3] images -> [N, features] pooled features. The stem needs no input gradient.
  Tensor forward(Context& ctx, const Tensor& x) override;

 private:
  int64_t features_;
};

}  // namespace cuface
