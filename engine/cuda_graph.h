// CudaGraph: work queued on a Context's stream, captured once and replayed as one launch.
//
//   CudaGraph graph;
//   if (!graph.capture(ctx, [&] { model.train_step(...); }, &why)) ... run eagerly, say why ...
//   for (...) { copy the next inputs into the captured input tensors; graph.replay(ctx); }
//
// A replay repeats the captured kernels with the arguments and addresses they had during the
// capture, on the memory as it is at the replay: inputs must be written into the same tensors, and
// everything a step varies must live in device memory (a learning rate or a step passed by value
// is frozen at the captured value). Host code inside the captured function runs once, at the
// capture. The tensors the captured work allocates belong to the graph's private pool of the
// caching allocator (engine/allocator.h) until the graph is destroyed.
//
// What cannot be captured (a host synchronisation, a blocking or pageable copy, a cuDNN algorithm
// search, a tensor whose shape differs) invalidates the capture: capture() then returns false with
// CUDA's reason and the caller runs eagerly. On a CPU context, or a build without CUDA, capture()
// returns false at once.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "engine/context.h"

namespace cuface {

class CudaGraph {
 public:
  CudaGraph() = default;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  ~CudaGraph();

  // Captures what `work` queues on ctx's stream (nothing runs). False, with the reason in `why`,
  // when it cannot be captured; the context is then usable as before.
  bool capture(Context& ctx, const std::function<void()>& work, std::string* why);
  bool captured() const { return exec_ != nullptr; }
  // Queues the captured work on ctx's stream (asynchronous, like any kernel launch).
  void replay(Context& ctx);
  // Frees the graph and returns its memory pool to the shared cache.
  void reset();

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
  uint64_t pool_ = 0;     // CudaCachingAllocator::PoolId
};

}  // namespace cuface
