#include "engine/host_copy.h"

#include <cstring>

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

PinnedUpload::~PinnedUpload() {
#if CUFACE_HAS_CUDA
  if (!event_) return;
  cudaEventSynchronize(static_cast<cudaEvent_t>(event_));  // the pinned buffer must outlive the copy
  cudaEventDestroy(static_cast<cudaEvent_t>(event_));
#endif
}

void PinnedUpload::start(Context& ctx, const Tensor& values, Tensor& destination) {
  CUFACE_CHECK(values.defined() && !values.is_cuda() && destination.defined() &&
                   destination.device() == ctx.device() && values.dtype() == destination.dtype() &&
                   values.numel() == destination.numel(),
               "PinnedUpload: cannot copy " + values.str() + " into " + destination.str());
  if (!ctx.is_cuda()) {
    destination.copy_from(values);
    return;
  }
#if CUFACE_HAS_CUDA
  if (event_) {
    CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));  // the last copy has read pinned_
  } else {
    cudaEvent_t event;
    CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    event_ = event;
  }
  if (!pinned_.defined() || pinned_.bytes() != values.bytes())
    pinned_ = Tensor::empty_pinned(values.shape(), values.dtype());
  std::memcpy(pinned_.raw(), values.raw(), values.bytes());
  CUDA_CHECK(cudaMemcpyAsync(destination.raw(), pinned_.raw(), values.bytes(), cudaMemcpyHostToDevice,
                             cuda_stream(ctx)));
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), cuda_stream(ctx)));
#else
  throw Error("PinnedUpload: this build has no CUDA backend");
#endif
}

}  // namespace cuface
