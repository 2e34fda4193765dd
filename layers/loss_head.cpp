#include "layers/loss_head.h"

namespace cuface {

Tensor LossHead::backward(Context&, const Tensor&) {
  throw Error(std::string(type()) + " is a loss head: call backward(ctx), it has no upstream gradient");
}

HeadStats LossHead::stats(Context& ctx) const {
  CUFACE_CHECK(stats_.defined(), std::string(type()) + ": stats() before any training forward");
  ctx.synchronize();
  return decode_stats(stats_.to(Device::CPU));
}

HeadStats LossHead::decode_stats(const Tensor& host) {
  CUFACE_CHECK(!host.is_cuda() && host.dtype() == DType::F32 && host.numel() == 4,
               "LossHead::decode_stats: expected the 4 statistics as f32 on the host, got " + host.str());
  const float* s = host.data<float>();
  return {s[0], s[1], s[2], int64_t(s[3])};
}

}  // namespace cuface
