#include "face/loader/upload.h"

#include "engine/error.h"

#if CUFACE_HAS_CUDA
#include "engine/cuda_context.h"
#endif

namespace cuface {

// CPU contexts keep the staged Batch and normalise straight from its (pinned) host memory. On CUDA,
// per staging buffer j (two, alternating): device copies of pixels and labels, the event marking its
// copy finished (copy stream), the event marking its last reader finished (compute stream), and the
// Batch whose pinned memory the copy reads.
struct BatchUploader::Buffers {
  Batch held[2];
  int staged = -1;  // buffer holding the staged batch, -1 none
  int next = 0;     // buffer the next stage() uses
#if CUFACE_HAS_CUDA
  cudaStream_t copy_stream = nullptr;
  Tensor pixels[2];
  Tensor labels[2];  // i32 [3, capacity]: identity, gender, age
  cudaEvent_t copied[2] = {};
  cudaEvent_t consumed[2] = {};
#endif
};

static Tensor normalised(Context& ctx, const Tensor& pixels, const NormaliseOptions& options) {
  Tensor out = Tensor::empty(pixels.shape(), options.dtype, ctx.device());
  normalise_u8(ctx, pixels, out, options.mean, options.scale);
  return out;
}

BatchUploader::BatchUploader(Context& ctx, NormaliseOptions options)
    : ctx_(ctx), options_(options), buffers_(std::make_unique<Buffers>()) {
  CUFACE_CHECK(options.dtype == DType::F32 || options.dtype == DType::BF16, "BatchUploader: output must be f32 or bf16");
  if (!ctx.is_cuda()) return;
#if CUFACE_HAS_CUDA
  Buffers& b = *buffers_;
  CUDA_CHECK(cudaStreamCreateWithFlags(&b.copy_stream, cudaStreamNonBlocking));
  for (int j = 0; j < 2; ++j) {
    CUDA_CHECK(cudaEventCreateWithFlags(&b.copied[j], cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&b.consumed[j], cudaEventDisableTiming));
  }
#else
  throw Error("BatchUploader: this build has no CUDA backend");
#endif
}

BatchUploader::~BatchUploader() {
#if CUFACE_HAS_CUDA
  Buffers& b = *buffers_;
  if (!b.copy_stream) return;
  cudaStreamSynchronize(b.copy_stream);  // pinned buffers must not go back to the loader mid-copy
  for (int j = 0; j < 2; ++j) {
    cudaEventDestroy(b.copied[j]);
    cudaEventDestroy(b.consumed[j]);
  }
  cudaStreamDestroy(b.copy_stream);
#endif
}

void BatchUploader::stage(Batch batch) {
  Buffers& b = *buffers_;
  CUFACE_CHECK(b.staged < 0, "BatchUploader::stage: a batch is already staged; take() it first");
  CUFACE_CHECK(batch.images.defined(), "BatchUploader::stage: empty batch");
  if (!ctx_.is_cuda()) {
    b.held[0] = std::move(batch);
    b.staged = 0;
    return;
  }
#if CUFACE_HAS_CUDA
  const int j = b.next;
  b.next ^= 1;
  // The batch copied into this buffer two stages ago: its copy is long finished (a take() made the
  // compute stream wait for it); make sure, then let its pinned memory go back to the loader.
  CUDA_CHECK(cudaEventSynchronize(b.copied[j]));
  b.held[j] = std::move(batch);
  const Batch& h = b.held[j];
  const int64_t n = h.size();
  if (!b.pixels[j].defined() || b.pixels[j].numel() < h.images.numel() || b.labels[j].size(1) < n) {
    CUDA_CHECK(cudaEventSynchronize(b.consumed[j]));  // the old buffers' last reader is done
    b.pixels[j] = Tensor::empty({h.images.numel()}, DType::U8, Device::CUDA);
    b.labels[j] = Tensor::empty({3, n}, DType::I32, Device::CUDA);
    // The caching allocator orders reuse by the compute stream only: the copy stream must not write
    // these blocks before the compute stream's earlier work on them is done.
    CUDA_CHECK(cudaEventRecord(b.consumed[j], cuda_stream(ctx_)));
  }
  // The compute stream must be done reading this device buffer (the take() two steps ago).
  CUDA_CHECK(cudaStreamWaitEvent(b.copy_stream, b.consumed[j], 0));
  CUDA_CHECK(cudaMemcpyAsync(b.pixels[j].raw(), h.images.raw(), h.images.bytes(), cudaMemcpyHostToDevice,
                             b.copy_stream));
  const int64_t capacity = b.labels[j].size(1);
  const Tensor* sources[3] = {&h.identity, &h.gender, &h.age};
  for (int k = 0; k < 3; ++k)
    CUDA_CHECK(cudaMemcpyAsync(b.labels[j].data<int32_t>() + k * capacity, sources[k]->raw(), size_t(n) * 4,
                               cudaMemcpyHostToDevice, b.copy_stream));
  CUDA_CHECK(cudaEventRecord(b.copied[j], b.copy_stream));
  b.staged = j;
#endif
}

DeviceBatch BatchUploader::take() {
  Buffers& b = *buffers_;
  CUFACE_CHECK(b.staged >= 0, "BatchUploader::take: nothing staged");
  const int j = b.staged;
  b.staged = -1;
  DeviceBatch out;
  out.epoch = b.held[j].epoch;
  out.step = b.held[j].step;
  if (!ctx_.is_cuda()) {
    const Batch h = std::move(b.held[j]);
    out.images = normalised(ctx_, h.images, options_);
    out.identity = h.identity.clone();
    out.gender = h.gender.clone();
    out.age = h.age.clone();
    return out;
  }
#if CUFACE_HAS_CUDA
  const Batch& h = b.held[j];
  const int64_t n = h.size();
  cudaStream_t stream = cuda_stream(ctx_);
  CUDA_CHECK(cudaStreamWaitEvent(stream, b.copied[j], 0));
  out.images = normalised(ctx_, b.pixels[j].slice(0, h.images.numel()).reshape(h.images.shape()), options_);
  // Labels get their own tensors: the staging buffer is overwritten two steps from now, while this
  // step's loss may still be reading them.
  const int64_t capacity = b.labels[j].size(1);
  Tensor* targets[3] = {&out.identity, &out.gender, &out.age};
  for (int k = 0; k < 3; ++k) {
    *targets[k] = Tensor::empty({n}, DType::I32, Device::CUDA);
    CUDA_CHECK(cudaMemcpyAsync(targets[k]->raw(), b.labels[j].data<int32_t>() + k * capacity, size_t(n) * 4,
                               cudaMemcpyDeviceToDevice, stream));
  }
  CUDA_CHECK(cudaEventRecord(b.consumed[j], stream));
#endif
  return out;
}

DeviceBatch to_device_normalised(Context& ctx, const Batch& batch, NormaliseOptions options) {
  BatchUploader uploader(ctx, options);
  uploader.stage(batch);
  return uploader.take();
}

}  // namespace cuface
