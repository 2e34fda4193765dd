#include "face/model/resnet.h"

#include "kernels/elementwise.h"

namespace cuface {

ResNetSpec resnet_spec(const std::string& arch) {
  if (arch == "resnet18") return {false, {2, 2, 2, 2}, 64};
  if (arch == "resnet34") return {false, {3, 4, 6, 3}, 64};
  if (arch == "resnet50") return {true, {3, 4, 6, 3}, 64};
  if (arch == "resnet100") return {true, {3, 13, 30, 3}, 64};
  if (arch == "tiny") return {true, {1, 1, 1, 1}, 8};
  throw Error("unknown --arch '" + arch + "' (expected resnet18, resnet34, resnet50, resnet100 or tiny)");
}

static BatchNormOptions bn_options(float momentum, bool relu) {
  BatchNormOptions options;
  options.momentum = momentum;
  options.relu = relu;
  return options;
}

ResidualBlock::ResidualBlock(bool bottleneck, int64_t in_channels, int64_t width, int64_t stride, float bn_momentum,
                             SeedSequence& seeds)
    : bottleneck_(bottleneck),
      out_channels_(bottleneck ? 4 * width : width),
      join_(out_channels_, bn_options(bn_momentum, true)) {
  if (bottleneck) {
    main_.emplace<Conv2d>("conv1", in_channels, width, 1, 1, 0, false, seeds.next());
    main_.emplace<BatchNorm>("bn1", width, bn_options(bn_momentum, true));
    main_.emplace<Conv2d>("conv2", width, width, 3, stride, 1, false, seeds.next());
    main_.emplace<BatchNorm>("bn2", width, bn_options(bn_momentum, true));
    main_.emplace<Conv2d>("conv3", width, out_channels_, 1, 1, 0, false, seeds.next());
  } else {
    main_.emplace<Conv2d>("conv1", in_channels, width, 3, stride, 1, false, seeds.next());
    main_.emplace<BatchNorm>("bn1", width, bn_options(bn_momentum, true));
    main_.emplace<Conv2d>("conv2", width, width, 3, 1, 1, false, seeds.next());
  }
  if (stride != 1 || in_channels != out_channels_) {
    downsample_ = std::make_unique<Sequential>();
    downsample_->emplace<Conv2d>("0", in_channels, out_channels_, 1, stride, 0, false, seeds.next());
    downsample_->emplace<BatchNorm>("1", out_channels_, bn_options(bn_momentum, false));
  }
}

Tensor ResidualBlock::forward(Context& ctx, const Tensor& x) {
  Tensor main = main_.forward(ctx, x);
  Tensor shortcut = downsample_ ? downsample_->forward(ctx, x) : x;
  // Statistics (x read), then x and the shortcut read and y written.
  ProfileScope scope(ctx, "BatchNorm+Add", Pass::Forward, {0, 4 * tensor_bytes(main)});
  return join_.forward_join(ctx, main, shortcut);
}

Tensor ResidualBlock::backward(Context& ctx, const Tensor& dy) {
  // Both branches receive the join's gradient; at the block input their gradients add up.
  BatchNorm::JoinGradients join;
  {
    // dy and y read, g written, then x and g read and dx written.
    ProfileScope scope(ctx, "BatchNorm+Add", Pass::Backward, {0, 7 * tensor_bytes(dy)});
    join = join_.backward_join(ctx, dy);
  }
  Tensor dx = main_.backward(ctx, join.dx);
  Tensor shortcut_dx = downsample_ ? downsample_->backward(ctx, join.dshortcut) : join.dshortcut;
  ProfileScope scope(ctx, "ResidualAdd", Pass::Backward, {0, 3 * tensor_bytes(dx)});
  add(ctx, dx, shortcut_dx, dx);
  return dx;
}

void ResidualBlock::collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  main_.collect_parameters(prefix, out);  // conv1, bn1, ... directly under the block's name
  join_.collect_parameters(join_name(prefix, bottleneck_ ? "bn3" : "bn2"), out);
  if (downsample_) downsample_->collect_parameters(join_name(prefix, "downsample"), out);
}

void ResidualBlock::set_training(bool training) {
  Layer::set_training(training);
  main_.set_training(training);
  join_.set_training(training);
  if (downsample_) downsample_->set_training(training);
}

void ResidualBlock::visit(const std::function<void(Layer&)>& f) {
  f(*this);
  main_.visit(f);
  join_.visit(f);
  if (downsample_) downsample_->visit(f);
}

void ResidualBlock::set_frozen(bool frozen) {
  Layer::set_frozen(frozen);
  main_.set_frozen(frozen);
  join_.set_frozen(frozen);
  if (downsample_) downsample_->set_frozen(frozen);
}

ResNet::ResNet(const ResNetSpec& spec, uint64_t seed) {
  SeedSequence seeds(seed);
  const int64_t stem = spec.width;
  emplace<Conv2d>("conv1", 3, stem, 7, 2, 3, false, seeds.next()).set_input_gradient(false);
  emplace<BatchNorm>("bn1", stem, bn_options(spec.bn_momentum, true));
  emplace<MaxPool2d>("maxpool", 3, 2, 1);
  int64_t channels = stem;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t width = spec.width << stage;
    auto& layer = emplace<Sequential>("layer" + std::to_string(stage + 1));
    for (int b = 0; b < spec.blocks[stage]; ++b) {
      const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      auto& block = layer.emplace<ResidualBlock>(std::to_string(b), spec.bottleneck, channels, width, stride,
                                                 spec.bn_momentum, seeds);
      channels = block.out_channels();
    }
  }
  emplace<GlobalAvgPool>("avgpool");
  features_ = channels;
}

Tensor ResNet::forward(Context& ctx, const Tensor& x) {
  CUFACE_CHECK(x.rank() == 4 && x.size(3) == 3, "ResNet expects NHWC images [N, H, W, 3], got " + x.str());
  return Sequential::forward(ctx, x);
}

}  // namespace cuface
