#include "engine/host_copy.h"

#include "engine/error.h"

#if CUFACE_HAS_CUDA
#include "engine/cuda_context.h"
#endif

namespace cuface {

HostCopy::~HostCopy() {
#if CUFACE_HAS_CUDA
  if (!event_) return;
  cudaEventSynchronize(static_cast<cudaEvent_t>(event_));  // the pinned buffer must outlive the copy
  cudaEventDestroy(static_cast<cudaEvent_t>(event_));
#endif
}

void HostCopy::start(Context& ctx, const Tensor& source) {
  CUFACE_CHECK(source.defined(), "HostCopy::start: undefined tensor");
  if (pending_) wait();
  if (!ctx.is_cuda()) {
    host_ = source.clone();
    return;
  }
#if CUFACE_HAS_CUDA
  if (!event_) {
    cudaEvent_t event;
    CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    event_ = event;
  }
  if (!host_.defined() || host_.shape() != source.shape() || host_.dtype() != source.dtype())
    host_ = Tensor::empty_pinned(source.shape(), source.dtype());
  CUDA_CHECK(cudaMemcpyAsync(host_.raw(), source.raw(), source.bytes(), cudaMemcpyDeviceToHost,
                             cuda_stream(ctx)));
  // External: in a captured CUDA graph the record is a node of its own, reached at each replay.
  CUDA_CHECK(cudaEventRecordWithFlags(static_cast<cudaEvent_t>(event_), cuda_stream(ctx), cudaEventRecordExternal));
  pending_ = true;
#else
  throw Error("HostCopy: this build has no CUDA backend");
#endif
}

const Tensor& HostCopy::wait() {
  CUFACE_CHECK(host_.defined(), "HostCopy::wait: no copy started");
#if CUFACE_HAS_CUDA
  // Also when nothing is pending here: a replayed CUDA graph records the event again.
  if (event_) CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
#endif
  pending_ = false;
  return host_;
}

}  // namespace cuface
