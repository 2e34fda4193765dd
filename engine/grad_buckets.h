// GradBuckets: flat gradient storage for data-parallel training, averaged over the ranks in buckets
// that overlap with backward.
//
// The fp32 gradients live as views in a few flat buffers, one per bucket of about `bucket_bytes`,
// filled in the order backward produces them (last layer first). When the last gradient of a bucket
// is marked ready its mean all-reduce starts (on the GPU on the communication stream, ordered after
// the work already queued; on the CPU as a non-blocking MPI collective) while backward goes on with
// earlier layers. wait() at the end of backward makes the averaged gradients visible to what the
// context runs next (the optimizer).
//
//   GradBuckets buckets(comm, shapes_in_backward_order, device);
//   parameter[i]->grad = buckets.grad(i);                     // once: layers accumulate into the views
//   per step: buckets.zero(ctx); forward; backward, calling buckets.mark_ready(ctx, i) as gradient i
//             becomes final; buckets.wait(ctx); optimizer step
//
// One message per bucket instead of one per tensor: ResNet-50 has 161 parameter tensors, many tiny
// (BatchNorm), and each collective costs latency (~10-50 us with NCCL). Buckets start strictly in
// order on every rank, because all ranks must issue collectives in the same order; a bucket that
// completes early waits for the ones before it.
#pragma once
#include <memory>
#include <vector>

#include "engine/communicator.h"

namespace cuface {

class GradBuckets {
 public:
  static constexpr size_t kDefaultBucketBytes = size_t(25) << 20;  // PyTorch DDP's default

  // `shapes`: the gradients in backward order. `wire`: F32, or BF16 to halve the traffic (see
  // Communicator::start_all_reduce for the precision this costs).
  GradBuckets(Communicator& comm, const std::vector<Shape>& shapes, Device device,
              size_t bucket_bytes = kDefaultBucketBytes, DType wire = DType::F32);

  int size() const { return int(grads_.size()); }
  // Gradient i: a view into its bucket's buffer, with the shape given to the constructor.
  const Tensor& grad(int i) const { return grads_.at(size_t(i)); }
  int bucket_count() const { return int(buckets_.size()); }
  int bucket_of(int i) const { return bucket_of_.at(size_t(i)); }
  // Bucket b's flat f32 buffer (its gradients, each starting on a 64-byte boundary; the padding is 0).
  const Tensor& bucket(int b) const { return buckets_.at(size_t(b)).flat; }

  // Zeroes every gradient (one memset per bucket), queued on the context.
  void zero(Context& ctx);
  // Gradient i is final for this step (the kernels producing it are queued on `ctx`). Starts every
  // bucket that is now complete and whose predecessors have started.
  void mark_ready(Context& ctx, int i);
  // Starts the buckets not started yet (their unmarked gradients, such as a frozen layer's, are taken
  // as final), then waits for all of them. Afterwards every gradient holds the mean over the ranks.
  void wait(Context& ctx);

 private:
  struct Bucket {
    Tensor flat;
    int gradients = 0;  // how many gradients live here
    int ready = 0;      // how many were marked ready this step
    std::unique_ptr<PendingCollective> pending;
  };
  void start_bucket(Context& ctx, Bucket& bucket);

  Communicator& comm_;
  DType wire_;
  std::vector<Tensor> grads_;
  std::vector<int> bucket_of_;
  std::vector<bool> marked_;
  std::vector<Bucket> buckets_;
  int started_ = 0;  // buckets [0, started_) are in flight this step
};

}  // namespace cuface
