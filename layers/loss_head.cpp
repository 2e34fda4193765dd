#include "layers/loss_head.h"

namespace cuface {

Tensor LossHead::backward(Context&, const Tensor&) {
  throw Error(std::string(type()) + " is a loss head: call backward(ctx), it has no upstream gradient");
}

HeadStats LossHead::stats(Context& ctx) const {
  CUFACE_CHECK(stats_.defined(), std::string(type()) + ": stats() before any training forward");
  ctx.synchronize();
  const Tensor host = stats_.to(Device::CPU);
  const float* s = host.data<float>();
  return {s[0], s[1], s[2], int64_t(s[3])};
}

}  // namespace cuface
