// HostCopy: a small device tensor copied to pinned host memory without draining the stream.
//
//   HostCopy copy;
//   copy.start(ctx, loss_stats);        // after the forward that writes them, before the backward
//   ... queue the backward ...
//   const Tensor& host = copy.wait();   // waits for that copy (an event), not for the backward
//
// The copy is queued on the context's stream and an event recorded after it, so the host reads a
// step's loss as soon as the forward that wrote it has run, while the backward queued meanwhile keeps
// the GPU busy: no per-step drain of the whole stream (Context::synchronize). On a CPU context start()
// copies at once and wait() returns that copy. Captured in a CUDA graph, the copy and the event's
// record (an external event node) happen at every replay, and wait() waits for the latest.
//
// PinnedUpload, the other way: a few host values copied into a device tensor on the context's stream
// without draining it, as a CUDA graph's per-step inputs (a step number, a learning rate) are written
// before each replay:
//
//   PinnedUpload upload;
//   upload.start(ctx, host_values, device_tensor);   // host_values: read at the call
//
// The values go through pinned memory (from pageable memory CUDA may stage the copy synchronously, and
// a capture refuses it), which start() rewrites only once the previous copy out of it has run (an
// event; long done when each step uploads once). On a CPU context it copies at once.
#pragma once
#include "engine/context.h"
#include "engine/tensor.h"

namespace cuface {

class HostCopy {
 public:
  HostCopy() = default;
  HostCopy(const HostCopy&) = delete;
  HostCopy& operator=(const HostCopy&) = delete;
  ~HostCopy();

  // Queues the copy of `source` (any device); the previous copy, if still pending, is waited for first.
  void start(Context& ctx, const Tensor& source);
  bool started() const { return host_.defined(); }
  // The host copy of what `source` held when start() was queued; valid until the next start().
  const Tensor& wait();

 private:
  Tensor host_;            // pinned on CUDA contexts
  void* event_ = nullptr;  // cudaEvent_t, created on the first CUDA start()
  bool pending_ = false;
};

class PinnedUpload {
 public:
  PinnedUpload() = default;
  PinnedUpload(const PinnedUpload&) = delete;
  PinnedUpload& operator=(const PinnedUpload&) = delete;
  ~PinnedUpload();

  // Queues the copy of `values` (a CPU tensor) into `destination` (same dtype and numel, on ctx's device).
  void start(Context& ctx, const Tensor& values, Tensor& destination);

 private:
  Tensor pinned_;
  void* event_ = nullptr;  // cudaEvent_t, recorded after the copy out of pinned_
};

}  // namespace cuface
