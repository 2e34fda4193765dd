// LossHead: the last layer of a task, which takes integer labels and starts the backward pass.
//
//   Tensor loss = head.forward(ctx, x, labels);   // training: mean loss, 1-element device tensor
//   Tensor dx   = head.backward(ctx);             // dL/dx; adds dL/dparams into Parameter::grad
//   HeadStats s = head.stats(ctx);                // the step's numbers on the host, when logging
//   Tensor y    = head.forward(ctx, x);           // inference: class scores, nothing saved
//
// Labels are i32 [N] on x's device; -1 marks a row to ignore (no loss, no gradient; means are over
// the labelled rows). Nothing is copied to the host until stats() is called (or stats_tensor() is
// copied), so a training loop that logs every k steps synchronises only then. The returned loss and
// the statistics stay valid until the next training forward.
#pragma once
#include "layers/layer.h"

namespace cuface {

struct HeadStats {
  float loss = 0;          // mean cross-entropy over labelled rows
  float accuracy = 0;      // top-1 training accuracy (argmax of the unmodified scores)
  float mean_target = 0;   // MarginHead: mean target cosine; SoftmaxHead: mean target probability
  int64_t labelled = 0;    // rows with a label
};

class LossHead : public Layer {
 public:
  using Layer::forward;
  virtual Tensor forward(Context& ctx, const Tensor& x, const Tensor& labels) = 0;
  virtual Tensor backward(Context& ctx) = 0;
  // A loss head has no upstream gradient: this throws and names backward(ctx).
  Tensor backward(Context& ctx, const Tensor& dy) final;

  // Copies the statistics of the last training forward to the host (waits for the device).
  HeadStats stats(Context& ctx) const;
  // Those statistics where forward left them, [4] f32 on the device (FaceModel::train_step copies
  // them asynchronously, engine/host_copy.h), and their host copy decoded.
  const Tensor& stats_tensor() const { return stats_; }
  static HeadStats decode_stats(const Tensor& host);

 protected:
  // [4] f32 = {loss, accuracy, mean target, labelled rows} (kernels/loss_stats.h), written by forward.
  Tensor stats_;
};

}  // namespace cuface
