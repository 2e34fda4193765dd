// NCCL communicator: GPU tensors, one NCCL communicator per process on the GPU of its local rank.
// CPU tensors, host scalars and the barrier go to the host communicator (MPI, or the single process
// one for world size 1), which also carries the NCCL unique id from rank 0 to the others.
//
// Collectives run on a communication stream of high priority, ordered after the context's stream
// by an event; the context's stream waits for their end by another event, so gradient buckets
// reduce while backward continues. A watchdog thread polls every queued collective and NCCL's
// asynchronous error: past CUFACE_COMM_TIMEOUT, or on an error, it aborts NCCL and ends the job.
#include "engine/communicator.h"

#if CUFACE_HAS_NCCL
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "engine/allocator.h"
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"

#define NCCL_CHECK(call)                                                                                   \
  do {                                                                                                     \
    ncclResult_t status_ = (call);                                                                         \
    if (status_ != ncclSuccess)                                                                            \
      ::cuface::throw_error(std::string(#call) + " failed: " + ncclGetErrorString(status_) + " (" +         \
                                ncclGetLastError(nullptr) + ")",                                           \
                            __FILE__, __LINE__);                                                           \
  } while (0)

namespace cuface {
namespace {

// ---- wire-format conversions and the division of a mean, on the communication stream -------------

__global__ void f32_to_bf16_kernel(const float* x, bf16* y, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] = to_bf16(x[i]);
}
__global__ void bf16_to_f32_kernel(const bf16* x, float* y, float divisor, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] = to_float(x[i]) / divisor;
}
__global__ void divide_f32_kernel(float* x, float divisor, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) x[i] /= divisor;
}
__global__ void divide_bf16_kernel(bf16* x, float divisor, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) x[i] = to_bf16(to_float(x[i]) / divisor);
}

constexpr int kBlock = 256;

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::U8: return ncclUint8;
    case DType::I32: return ncclInt32;
  }
  return ncclUint8;
}

struct Event {
  cudaEvent_t event = nullptr;
  Event() { CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(event); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

// ---- watchdog ---------------------------------------------------------------------------------------

class NcclWatchdog {
 public:
  NcclWatchdog(Communicator& host, int gpu, double timeout) : host_(host), gpu_(gpu), timeout_(timeout) {
    thread_ = std::thread([this] { run(); });
  }
  ~NcclWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  void set_comm(ncclComm_t comm) { comm_ = comm; }
  // A queued collective; it is done when `done` has fired. A null `done` marks a host phase (NCCL
  // initialisation) that lasts until end_host_phase().
  void watch(std::shared_ptr<Event> done, const char* what) {
    std::lock_guard<std::mutex> lock(mutex_);
    watched_.push_back({std::move(done), std::chrono::steady_clock::now(), what});
  }
  void end_host_phase() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = watched_.begin(); it != watched_.end(); ++it)
      if (!it->done) {
        watched_.erase(it);
        return;
      }
  }

 private:
  struct Watched {
    std::shared_ptr<Event> done;
    std::chrono::steady_clock::time_point start;
    const char* what;
  };

  void run() {
    cudaSetDevice(gpu_);  // event queries in this thread address the communicator's GPU
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(100));
      while (!watched_.empty() && watched_.front().done) {
        cudaError_t state = cudaEventQuery(watched_.front().done->event);
        if (state == cudaErrorNotReady) break;
        if (state != cudaSuccess)
          give_up(on_this_rank(std::string(watched_.front().what) + " failed on the GPU: " + cudaGetErrorString(state)));
        watched_.pop_front();
      }
      if (ncclComm_t comm = comm_.load()) {
        ncclResult_t error = ncclSuccess;
        if (ncclCommGetAsyncError(comm, &error) == ncclSuccess && error != ncclSuccess && error != ncclInProgress)
          give_up(on_this_rank(std::string("NCCL error: ") + ncclGetErrorString(error) + " (" + ncclGetLastError(comm) + ")"));
      }
      if (!watched_.empty()) {
        double waited =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - watched_.front().start).count();
        if (waited > timeout_) give_up(no_progress_message(host_.rank(), watched_.front().what, timeout_));
      }
    }
  }

  std::string on_this_rank(const std::string& text) const { return "rank " + std::to_string(host_.rank()) + ": " + text; }

  // Unblocks the GPU (NCCL kernels waiting for a dead peer never finish) and ends the job.
  [[noreturn]] void give_up(const std::string& message) {
    if (ncclComm_t comm = comm_.load()) ncclCommAbort(comm);
    host_.abort_job(message);
  }

  Communicator& host_;
  int gpu_;
  double timeout_;
  std::atomic<ncclComm_t> comm_{nullptr};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Watched> watched_;
  bool stopping_ = false;
  std::thread thread_;
};

// ---- collectives ------------------------------------------------------------------------------------

// Done when its end event has fired; wait() orders the context's stream after it. Holds its
// buffers until then, so the caching allocator cannot hand them to other work too early.
class NcclCollective : public PendingCollective {
 public:
  NcclCollective(cudaStream_t compute, std::shared_ptr<Event> done, std::vector<Tensor> buffers)
      : compute_(compute), done_(std::move(done)), buffers_(std::move(buffers)) {}
  ~NcclCollective() override {
    if (!waited_) cudaStreamWaitEvent(compute_, done_->event, 0);
  }
  void wait() override {
    if (waited_) return;
    CUDA_CHECK(cudaStreamWaitEvent(compute_, done_->event, 0));
    waited_ = true;
    buffers_.clear();  // later work that reuses them is queued behind the wait
  }
  bool test() override {
    const cudaError_t state = cudaEventQuery(done_->event);
    if (state == cudaErrorNotReady) {
      // "Not ready" is also left as this thread's last error: cleared here, or the next kernel
      // launch's CUDA_CHECK_LAUNCH (cudaGetLastError) would report it as a failure.
      cudaGetLastError();
      return false;
    }
    CUDA_CHECK(state);
    return true;
  }

 private:
  cudaStream_t compute_;
  std::shared_ptr<Event> done_;
  std::vector<Tensor> buffers_;
  bool waited_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  explicit NcclCommunicator(std::unique_ptr<Communicator> host)
      : Communicator(host->rank(), host->world_size(), host->local_rank()),
        host_(std::move(host)),
        gpu_(local_rank()) {
    int gpus = cuda_device_count();
    CUFACE_CHECK(gpu_ < gpus, "rank " + std::to_string(rank()) + ": local rank " + std::to_string(gpu_) +
                                  " has no GPU (" + std::to_string(gpus) +
                                  " on this machine); launch at most one rank per GPU");
    CUDA_CHECK(cudaSetDevice(gpu_));
    int least = 0, greatest = 0;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));

    ncclUniqueId id{};
    if (rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    Context cpu(Device::CPU);
    Tensor id_bytes = Tensor::from_blob(&id, {int64_t(sizeof id)}, DType::U8, Device::CPU);
    host_->broadcast(cpu, id_bytes, 0);

    // Initialisation waits for every rank: under the watchdog too.
    watchdog_ = std::make_unique<NcclWatchdog>(*host_, gpu_, communication_timeout_seconds());
    watchdog_->watch(nullptr, "NCCL initialisation");
    try {
      NCCL_CHECK(ncclCommInitRank(&comm_, world_size(), id, rank()));
    } catch (...) {
      watchdog_.reset();
      cudaStreamDestroy(stream_);
      throw;
    }
    watchdog_->end_host_phase();
    watchdog_->set_comm(comm_);
  }

  ~NcclCommunicator() override {
    if (std::uncaught_exceptions() > 0) {
      // An error is unwinding this rank: peers may be blocked in collectives this rank will never join.
      watchdog_.reset();
      ncclCommAbort(comm_);
    } else {
      cudaStreamSynchronize(stream_);  // bounded: the watchdog still runs
      watchdog_.reset();
      ncclCommDestroy(comm_);
    }
    cudaStreamDestroy(stream_);
  }

  const char* backend() const override { return "nccl"; }

 protected:
  std::unique_ptr<PendingCollective> do_start_all_reduce(Context& ctx, Tensor& tensor, ReduceOp op,
                                                         DType wire) override {
    if (!tensor.is_cuda()) return host_->start_all_reduce(ctx, tensor, op, wire);
    int64_t n = tensor.numel();
    float divisor = op == ReduceOp::Mean ? float(world_size()) : 1.0f;
    bool divide = op == ReduceOp::Mean && world_size() > 1;
    ncclRedOp_t nccl_op = op == ReduceOp::Max ? ncclMax : ncclSum;
    bool convert = tensor.dtype() == DType::F32 && wire == DType::BF16;
    Tensor message = convert ? Tensor::empty(tensor.shape(), DType::BF16, Device::CUDA) : tensor;
    return enqueue(ctx, "all_reduce", {tensor, message}, [&] {
      int grid = grid_for(n, kBlock);
      if (convert) {
        launch(f32_to_bf16_kernel, grid, kBlock, 0, stream_, tensor.data<float>(), message.data<bf16>(), n);
      }
      NCCL_CHECK(ncclAllReduce(message.raw(), message.raw(), size_t(n), nccl_type(message.dtype()), nccl_op, comm_,
                               stream_));
      if (convert) {
        launch(bf16_to_f32_kernel, grid, kBlock, 0, stream_, message.data<bf16>(), tensor.data<float>(), divisor, n);
      } else if (divide && tensor.dtype() == DType::F32) {
        launch(divide_f32_kernel, grid, kBlock, 0, stream_, tensor.data<float>(), divisor, n);
      } else if (divide) {
        launch(divide_bf16_kernel, grid, kBlock, 0, stream_, tensor.data<bf16>(), divisor, n);
      }
    });
  }

  void do_broadcast(Context& ctx, Tensor& tensor, int root) override {
    if (!tensor.is_cuda()) return host_->broadcast(ctx, tensor, root);
    enqueue(ctx, "broadcast", {tensor}, [&] {
      NCCL_CHECK(ncclBroadcast(tensor.raw(), tensor.raw(), size_t(tensor.numel()), nccl_type(tensor.dtype()), root,
                               comm_, stream_));
    })->wait();
  }

  void do_all_gather(Context& ctx, const Tensor& in, Tensor& out) override {
    if (!in.is_cuda()) return host_->all_gather(ctx, in, out);
    enqueue(ctx, "all_gather", {in, out}, [&] {
      NCCL_CHECK(ncclAllGather(in.raw(), out.raw(), size_t(in.numel()), nccl_type(in.dtype()), comm_, stream_));
    })->wait();
  }

  void do_all_reduce_scalars(std::vector<double>& values, ReduceOp op) override {
    host_->all_reduce_scalars(values, op);
  }
  void do_barrier() override { host_->barrier(); }
  void do_abort_job(const std::string& message) override {
    ncclCommAbort(comm_);
    host_->abort_job(message);
  }

 private:
  // Queues `work` on the communication stream after everything queued so far on the context's
  // stream, and puts its end under the watchdog.
  std::unique_ptr<PendingCollective> enqueue(Context& ctx, const char* what, std::vector<Tensor> buffers,
                                             const std::function<void()>& work) {
    CUFACE_CHECK(ctx.gpu_index() == gpu_, std::string(what) + ": context on GPU " + std::to_string(ctx.gpu_index()) +
                                              ", NCCL communicator on GPU " + std::to_string(gpu_));
    cudaStream_t compute = cuda_stream(ctx);
    Event ready;
    CUDA_CHECK(cudaEventRecord(ready.event, compute));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, ready.event, 0));
    work();
    auto done = std::make_shared<Event>();
    CUDA_CHECK(cudaEventRecord(done->event, stream_));
    watchdog_->watch(done, what);
    return std::make_unique<NcclCollective>(compute, std::move(done), std::move(buffers));
  }

  std::unique_ptr<Communicator> host_;  // declared first: destroyed last
  int gpu_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  std::unique_ptr<NcclWatchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host) {
  CUFACE_CHECK(host != nullptr, "make_nccl_communicator: no host communicator");
  return std::make_unique<NcclCommunicator>(std::move(host));
}

}  // namespace cuface
#endif  // CUFACE_HAS_NCCL
