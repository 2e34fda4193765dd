// From a loader Batch (u8 pixels in pinned host memory) to the network's input on the context's
// device: (x - mean) * scale as f32 or bf16, NHWC, plus the labels.
//
// On CUDA the host-to-device copy of batch n+1 runs on a separate copy stream while the compute
// stream works on batch n; events order the two (copy done -> normalise; normalise done -> the
// next copy into the same device buffer). Two device staging buffers alternate, and the uploader
// keeps each Batch (its pinned ring buffer) until that batch's copy is known to be finished.
//
//   BatchUploader uploader(ctx);
//   uploader.stage(loader.next());
//   for (;;) {
//     DeviceBatch input = uploader.take();   // normalise batch n (after its copy)
//     uploader.stage(loader.next());         // copy batch n+1 while the step below runs
//     ... forward / backward on input ...
//   }
// On a CPU context the same calls normalise straight from the pinned buffer (no copy).
#pragma once
#include <memory>

#include "engine/context.h"
#include "face/loader/loader.h"
#include "kernels/image.h"

namespace cuface {

struct NormaliseOptions {
  DType dtype = DType::F32;  // F32 or BF16
  float mean = kPixelMean;
  float scale = kPixelScale;  // 1/128; kOriginalPixelScale (1/127.5) reproduces the original project
};

struct DeviceBatch {
  Tensor images;    // f32/bf16 [n, size, size, 3] on the context's device
  Tensor identity;  // i32 [n] on the context's device
  Tensor gender;
  Tensor age;
  int64_t epoch = 0;
  int64_t step = 0;
};

class BatchUploader {
 public:
  explicit BatchUploader(Context& ctx, NormaliseOptions options = {});
  ~BatchUploader();
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;

  // Starts copying `batch` to the device (returns at once). At most one batch is staged at a time.
  void stage(Batch batch);
  // The staged batch, normalised on the context's stream. Throws when nothing is staged.
  DeviceBatch take();

 private:
  struct Buffers;
  Context& ctx_;
  NormaliseOptions options_;
  std::unique_ptr<Buffers> buffers_;
};

// One batch without overlap (stage + take on a temporary uploader): for evaluation and tests.
DeviceBatch to_device_normalised(Context& ctx, const Batch& batch, NormaliseOptions options = {});

}  // namespace cuface
