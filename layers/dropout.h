// Dropout (inverted: kept values are scaled by 1 / (1 - p), so evaluation is the identity). The mask
// of a training forward is a pure function of (seed, step, element index) (kernels/dropout.h), the
// same on CPU and CUDA.
//
// The step counter: each training forward draws the mask of the current step, then advances it by
// one; backward recomputes the mask of the step its forward used (no mask is stored). set_step(n)
// sets the step the next training forward uses: resuming a run at training step n gives the masks
// the uninterrupted run would have drawn, and forwarding twice at the same step draws the same mask
// (what a finite-difference gradient check needs). Evaluation mode, and p = 0, return x unchanged
// and leave the counter alone. set_step(n, counter) adds the number in a device counter, read when the
// kernels run (kernels/random_step.h): a forward captured in a CUDA graph after set_step(0, counter)
// draws, at each replay, the mask of the step the host wrote into the counter.
//
// Layers with the same seed draw the same masks: give each Dropout of a model its own seed (and each
// data-parallel rank its own, so that ranks do not drop the same units).
#pragma once
#include <cstdint>
#include <utility>

#include "layers/layer.h"

namespace cuface {

class Dropout : public Layer {
 public:
  Dropout(float p, uint64_t seed);
  const char* type() const override { return "Dropout"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

  uint64_t step() const { return step_; }  // the step the next training forward will use (counter aside)
  void set_step(uint64_t step, Tensor counter = {}) {
    step_ = step;
    counter_ = std::move(counter);
  }

 private:
  float p_;
  uint64_t seed_;
  uint64_t step_ = 0;
  Tensor counter_;          // i32 [1] on the device, added to the step; undefined: none
  bool dropped_ = false;    // whether the last forward applied a mask (training and p > 0)
  uint64_t mask_step_ = 0;  // the step it used
};

}  // namespace cuface
