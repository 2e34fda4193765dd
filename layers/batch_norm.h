// BatchNorm over the channel (last) axis of [N, H, W, C] (BatchNorm2d) or [N, C] (BatchNorm1d)
// activations; the math is in kernels/batchnorm.h.
//
//   training:   normalise with the batch statistics, update the running ones, save x, the batch
//               mean and invstd (and y when ReLU is fused) for backward;
//   evaluation: normalise with the running statistics; backward then treats them as constants.
//
// Options:
//   momentum  PyTorch's convention: running = (1 - momentum) * running + momentum * batch, default
//             0.1. TensorFlow/Keras state the same thing as decay = 1 - momentum: the original
//             project's "BN decay 0.997" is momentum 0.003 here.
//   eps       added to the variance, default 1e-5 (PyTorch's and the original project's).
//   affine    learn a per-channel scale and shift (gamma, beta); off: y = xhat.
//   fixed_scale  gamma exists (as "weight", value 1) but is never trained: InsightFace's final
//             embedding BatchNorm1d, whose weight has requires_grad = False. Implies affine.
//   relu      fuse max(y, 0) into forward and its mask into backward (ResNet's conv -> BN -> ReLU);
//             the mask is read from the saved output y, so nothing extra is stored.
//
// The residual join (forward_join / backward_join): y = relu(bn(x) + shortcut), the end of a ResNet
// block, in the normalising pass itself (kernels/batchnorm.h: 4 activation passes where BatchNorm
// then a separate add + ReLU take 6, and no BatchNorm output is written). Backward returns dx and the
// shortcut's gradient, which the block passes down its shortcut branch.
//
// Synchronised (set_sync, `cuface train --sync-bn`): in training the batch statistics are those of
// the whole batch over every rank of the communicator (each rank holding its own rows, the same count
// on every rank), and backward differentiates through them: two all-reduces per layer and step, each
// one [2, C] message (forward's two moments, backward's two gradient sums; see kernels/batchnorm.h).
// Two ranks x B/2 rows then compute what one rank computes on B rows. The running statistics are
// updated from the global ones and so stay identical on every rank.
//
// Parameters, named as torchvision's state_dict names them:
//   weight [C] (gamma, ones), bias [C] (beta, zeros): trainable, no weight decay;
//   running_mean [C] (zeros), running_var [C] (ones): buffers;
//   num_batches_tracked: buffer, an i32 scalar (shape [], one element) counting training forwards.
//   torchvision stores it as an int64 scalar: the safetensors reader (engine/safetensors.h) reads
//   I64 into i32 (the count fits 31 bits for any real run), and cuface writes i32, which PyTorch's
//   load_state_dict copies into its int64 buffer. Without affine only the three buffers exist, as in
//   PyTorch.
#pragma once
#include "engine/communicator.h"
#include "layers/layer.h"

namespace cuface {

struct BatchNormOptions {
  float eps = 1e-5f;
  float momentum = 0.1f;
  bool affine = true;
  bool fixed_scale = false;
  bool relu = false;
};

class BatchNorm : public Layer {
 public:
  explicit BatchNorm(int64_t channels, BatchNormOptions options = {});
  const char* type() const override { return "BatchNorm"; }

  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  ProfileWork work(Pass pass, const Tensor& in, const Tensor& out) const override;

  // y = act(bn(x) + shortcut), act = ReLU when options().relu: the residual join fused in.
  Tensor forward_join(Context& ctx, const Tensor& x, const Tensor& shortcut);
  struct JoinGradients {
    Tensor dx;         // dL/dx
    Tensor dshortcut;  // dL/dshortcut
  };
  JoinGradients backward_join(Context& ctx, const Tensor& dy);

  int64_t channels() const { return channels_; }
  const BatchNormOptions& options() const { return options_; }
  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  Parameter& running_mean() { return running_mean_; }
  Parameter& running_var() { return running_var_; }
  Parameter& num_batches_tracked() { return num_batches_tracked_; }
  // Statistics over every rank of `comm` (null: this process's rows only). `comm` outlives the layer.
  void set_sync(Communicator* comm) { sync_ = comm; }
  // Every BatchNorm under `root` (itself included) synchronised over `comm`.
  static void sync_all(Layer& root, Communicator* comm);

 private:
  int64_t channels_;
  BatchNormOptions options_;
  Parameter weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
  Communicator* sync_ = nullptr;
  void forward_sync(Context& ctx, const Tensor& x, const Tensor& shortcut, Tensor& y);
  void backward_sync(Context& ctx, const Tensor& dy, Tensor& dx, Tensor& dshortcut);
  JoinGradients backward_gradients(Context& ctx, const Tensor& dy, bool want_shortcut);
  // Saved by forward for backward.
  Tensor x_, y_, mean_, invstd_;
  bool used_batch_stats_ = false;
  bool joined_ = false;  // the last forward added a shortcut
};

}  // namespace cuface
