#include "engine/grad_buckets.h"

#include <cstring>

#if CUFACE_HAS_CUDA
#include "engine/cuda_context.h"
#endif

namespace cuface {

namespace {
constexpr int64_t kAlignFloats = 16;  // 64 bytes: every gradient starts on a vector/cache-line boundary
int64_t align_up(int64_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }
}  // namespace

GradBuckets::GradBuckets(Communicator& comm, const std::vector<Shape>& shapes, Device device, size_t bucket_bytes,
                         DType wire)
    : comm_(comm), wire_(wire) {
  CUFACE_CHECK(wire == DType::F32 || wire == DType::BF16,
               std::string("gradient buckets travel as f32 or bf16, not ") + dtype_name(wire));
  CUFACE_CHECK(bucket_bytes > 0, "gradient buckets need a positive size");
  // Greedy in backward order: a bucket closes before the gradient that would take it past the limit
  // (a gradient larger than the limit gets a bucket of its own).
  std::vector<std::vector<int64_t>> offsets;  // per bucket: each of its gradients' first element
  std::vector<int64_t> lengths;               // per bucket: elements including padding
  for (size_t i = 0; i < shapes.size(); ++i) {
    int64_t length = align_up(shapes[i].numel());
    bool fits = !lengths.empty() && size_t(lengths.back() + length) * sizeof(float) <= bucket_bytes;
    if (!fits) {
      offsets.emplace_back();
      lengths.push_back(0);
    }
    offsets.back().push_back(lengths.back());
    lengths.back() += length;
    bucket_of_.push_back(int(lengths.size()) - 1);
  }
  buckets_.resize(lengths.size());
  size_t i = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    bucket.flat = Tensor::zeros({lengths[b]}, DType::F32, device);
    bucket.gradients = int(offsets[b].size());
    for (int64_t offset : offsets[b]) {
      grads_.push_back(bucket.flat.slice(offset, offset + shapes[i].numel()).reshape(shapes[i]));
      ++i;
    }
  }
  marked_.assign(shapes.size(), false);
}

void GradBuckets::zero([[maybe_unused]] Context& ctx) {
  CUFACE_CHECK(started_ == 0, "GradBuckets::zero while gradient reductions are in flight (call wait first)");
  for (Bucket& bucket : buckets_) {
    if (bucket.flat.is_cuda()) {
#if CUFACE_HAS_CUDA
      CUDA_CHECK(cudaMemsetAsync(bucket.flat.raw(), 0, bucket.flat.bytes(), cuda_stream(ctx)));
#endif
    } else {
      std::memset(bucket.flat.raw(), 0, bucket.flat.bytes());
    }
  }
}

void GradBuckets::start_bucket(Context& ctx, Bucket& bucket) {
  bucket.pending = comm_.start_all_reduce(ctx, bucket.flat, ReduceOp::Mean, wire_);
}

void GradBuckets::mark_ready(Context& ctx, int i) {
  CUFACE_CHECK(0 <= i && i < size(), "GradBuckets::mark_ready: no gradient " + std::to_string(i));
  CUFACE_CHECK(!marked_[size_t(i)], "GradBuckets::mark_ready: gradient " + std::to_string(i) +
                                        " marked twice in one step (call wait at the end of each step)");
  marked_[size_t(i)] = true;
  ++buckets_[size_t(bucket_of(i))].ready;
  while (started_ < bucket_count() && buckets_[size_t(started_)].ready == buckets_[size_t(started_)].gradients)
    start_bucket(ctx, buckets_[size_t(started_++)]);
  // MPI moves a non-blocking collective only inside MPI calls: give the ones in flight a push.
  for (int b = 0; b < started_; ++b) buckets_[size_t(b)].pending->test();
}

void GradBuckets::wait(Context& ctx) {
  while (started_ < bucket_count()) start_bucket(ctx, buckets_[size_t(started_++)]);
  for (Bucket& bucket : buckets_) {
    bucket.pending->wait();
    bucket.pending.reset();
    bucket.ready = 0;
  }
  marked_.assign(marked_.size(), false);
  started_ = 0;
}

}  // namespace cuface
