#include "engine/cuda_graph.h"

#include "engine/allocator.h"
#include "engine/error.h"

#if CUFACE_HAS_CUDA
#include "engine/cuda_context.h"
#endif

namespace cuface {

CudaGraph::~CudaGraph() { reset(); }

void CudaGraph::reset() {
#if CUFACE_HAS_CUDA
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  exec_ = nullptr;
  if (pool_) CudaCachingAllocator::instance().release_pool(pool_);
  pool_ = 0;
#endif
}

bool CudaGraph::capture(Context& ctx, const std::function<void()>& work, std::string* why) {
  reset();
  if (!ctx.is_cuda()) {
    *why = "CUDA graphs need a CUDA context";
    return false;
  }
#if CUFACE_HAS_CUDA
  cudaStream_t stream = cuda_stream(ctx);
  CudaCachingAllocator& allocator = CudaCachingAllocator::instance();
  // Thread-local: the loader's threads may allocate and copy meanwhile; this thread may not.
  const cudaError_t begun = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (begun != cudaSuccess) {
    cudaGetLastError();
    *why = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(begun);
    return false;
  }
  pool_ = allocator.begin_pool_capture();
  std::string failure;
  try {
    work();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  allocator.end_pool_capture();
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (ended != cudaSuccess && failure.empty()) failure = cudaGetErrorString(ended);
  cudaGetLastError();  // the refused call's error belongs to the capture, not to later work
  if (failure.empty() && cudaGraphInstantiate(reinterpret_cast<cudaGraphExec_t*>(&exec_), graph, 0) != cudaSuccess) {
    failure = cudaGetErrorString(cudaGetLastError());
    exec_ = nullptr;
  }
  if (graph) cudaGraphDestroy(graph);
  if (!failure.empty()) {
    reset();
    *why = failure;
    return false;
  }
  return true;
#else
  (void)work;
  *why = "this build has no CUDA backend";
  return false;
#endif
}

void CudaGraph::replay(Context& ctx) {
  CUFACE_CHECK(captured(), "CudaGraph::replay: nothing captured");
#if CUFACE_HAS_CUDA
  CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), cuda_stream(ctx)));
#else
  (void)ctx;
#endif
}

}  // namespace cuface
