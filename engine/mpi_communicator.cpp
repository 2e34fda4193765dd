// MPI communicator: CPU tensors and host scalars. Every collective is non-blocking (MPI_I*) and
// waited for by polling with a deadline, so a rank whose peers hang reports it instead of hanging.
#include "engine/communicator.h"

#if CUFACE_HAS_MPI
#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <exception>
#include <functional>
#include <thread>

namespace cuface {
namespace {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, size_t(length));
}

// For calls outside a communicator (initialisation).
#define MPI_CHECK(call)                                                                                      \
  do {                                                                                                       \
    int status_ = (call);                                                                                    \
    if (status_ != MPI_SUCCESS)                                                                              \
      ::cuface::throw_error(std::string(#call) + " failed: " + mpi_error_string(status_), __FILE__, __LINE__); \
  } while (0)

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return MPI_FLOAT;
    case DType::BF16:
    case DType::F16: return MPI_UINT16_T;  // 16-bit words; bf16 reductions use the ops below
    case DType::U8: return MPI_UINT8_T;
    case DType::I32: return MPI_INT32_T;
  }
  return MPI_DATATYPE_NULL;
}

// MPI has no bf16: it travels as 16-bit words, and these ops combine them in f32, rounding each partial
// result back to bf16 (as NCCL's bf16 reductions do).
void bf16_sum(void* in, void* inout, int* count, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *count; ++i) b[i] = to_bf16(to_float(a[i]) + to_float(b[i]));
}
void bf16_max(void* in, void* inout, int* count, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *count; ++i)
    if (to_float(a[i]) > to_float(b[i])) b[i] = a[i];
}

int element_count(const Tensor& tensor, const char* what) {
  CUFACE_CHECK(tensor.numel() <= INT_MAX, std::string(what) + ": " + tensor.str() + " exceeds MPI's int count");
  return int(tensor.numel());
}

class MpiCommunicator;

// A non-blocking collective and what to do with its result once it has arrived (divide for a mean,
// convert back from the wire format). Holds its buffers until then.
class MpiCollective : public PendingCollective {
 public:
  MpiCollective(MpiCommunicator& comm, const char* what, std::vector<Tensor> buffers, std::function<void()> finish)
      : comm_(comm), what_(what), buffers_(std::move(buffers)), finish_(std::move(finish)) {}
  ~MpiCollective() override;
  void wait() override;
  bool test() override;
  MPI_Request request = MPI_REQUEST_NULL;

 private:
  MpiCommunicator& comm_;
  const char* what_;
  std::vector<Tensor> buffers_;
  std::function<void()> finish_;
  bool finished_ = false;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int world_size, int local_rank, bool owns_mpi)
      : Communicator(rank, world_size, local_rank),
        comm_(comm),
        owns_mpi_(owns_mpi),
        timeout_(communication_timeout_seconds()) {
    MPI_CHECK(MPI_Op_create(bf16_sum, 1, &bf16_sum_));
    MPI_CHECK(MPI_Op_create(bf16_max, 1, &bf16_max_));
  }

  ~MpiCommunicator() override {
    // MPI_Finalize waits for every rank; after a failed collective, or while an error unwinds this
    // rank, the others may never get there: end the job instead.
    if (!failure_.empty()) abort_job(failure_);
    if (std::uncaught_exceptions() > 0) abort_job("rank " + std::to_string(rank()) + ": exiting on an error");
    MPI_Op_free(&bf16_sum_);
    MPI_Op_free(&bf16_max_);
    MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }

  const char* backend() const override { return "mpi"; }

  // Polls `request` until it completes. Past the deadline, or on an MPI error, this communicator is
  // marked failed (its destructor aborts the job) and the error is thrown.
  void wait_for(MPI_Request& request, const char* what) {
    CUFACE_CHECK(failure_.empty(), "rank " + std::to_string(rank()) + ": communicator unusable: " + failure_);
    auto start = std::chrono::steady_clock::now();
    for (long polls = 0;; ++polls) {
      if (poll(request, what)) return;
      // Spin while a small collective is likely to finish within microseconds, then give the core
      // away: with more ranks than cores (CI oversubscribes) spinning would starve the peers.
      if (polls > 100) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 1000 : 20));
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_) fail(no_progress_message(rank(), what, timeout_));
    }
  }

  // One MPI_Test: true once `request` has completed.
  bool poll(MPI_Request& request, const char* what) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    return done != 0;
  }

 protected:
  std::unique_ptr<PendingCollective> do_start_all_reduce(Context&, Tensor& tensor, ReduceOp op,
                                                         DType wire) override {
    require_cpu(tensor, "all_reduce");
    int count = element_count(tensor, "all_reduce");
    float ranks = float(world_size());
    bool mean = op == ReduceOp::Mean;
    // What travels: the tensor itself, or a bf16 copy of an f32 tensor.
    Tensor message = tensor;
    std::function<void()> finish;
    if (tensor.dtype() == DType::F32 && wire == DType::BF16) {
      message = Tensor::empty(tensor.shape(), DType::BF16);
      const float* x = tensor.data<float>();
      bf16* w = message.data<bf16>();
      for (int i = 0; i < count; ++i) w[i] = to_bf16(x[i]);
      finish = [tensor, message, count, ranks, mean] {
        float* y = tensor.data<float>();
        const bf16* w = message.data<bf16>();
        for (int i = 0; i < count; ++i) y[i] = mean ? to_float(w[i]) / ranks : to_float(w[i]);
      };
    } else if (mean && tensor.dtype() == DType::F32) {
      finish = [tensor, count, ranks] {
        float* y = tensor.data<float>();
        for (int i = 0; i < count; ++i) y[i] /= ranks;
      };
    } else if (mean) {  // a bf16 tensor
      finish = [tensor, count, ranks] {
        bf16* y = tensor.data<bf16>();
        for (int i = 0; i < count; ++i) y[i] = to_bf16(to_float(y[i]) / ranks);
      };
    } else {
      finish = [] {};
    }
    MPI_Op mpi_op = message.dtype() == DType::BF16 ? (op == ReduceOp::Max ? bf16_max_ : bf16_sum_)
                                                   : (op == ReduceOp::Max ? MPI_MAX : MPI_SUM);
    auto pending = std::make_unique<MpiCollective>(*this, "all_reduce", std::vector<Tensor>{tensor, message},
                                                   std::move(finish));
    check(MPI_Iallreduce(MPI_IN_PLACE, message.raw(), count, mpi_type(message.dtype()), mpi_op, comm_,
                         &pending->request),
          "all_reduce");
    return pending;
  }

  void do_broadcast(Context&, Tensor& tensor, int root) override {
    require_cpu(tensor, "broadcast");
    MPI_Request request;
    check(MPI_Ibcast(tensor.raw(), element_count(tensor, "broadcast"), mpi_type(tensor.dtype()), root, comm_,
                     &request),
          "broadcast");
    wait_for(request, "broadcast");
  }

  void do_all_gather(Context&, const Tensor& in, Tensor& out) override {
    require_cpu(in, "all_gather");
    int count = element_count(in, "all_gather");
    element_count(out, "all_gather");
    MPI_Datatype type = mpi_type(in.dtype());
    MPI_Request request;
    check(MPI_Iallgather(in.raw(), count, type, out.raw(), count, type, comm_, &request), "all_gather");
    wait_for(request, "all_gather");
  }

  void do_all_reduce_scalars(std::vector<double>& values, ReduceOp op) override {
    MPI_Request request;
    check(MPI_Iallreduce(MPI_IN_PLACE, values.data(), int(values.size()), MPI_DOUBLE,
                         op == ReduceOp::Max ? MPI_MAX : MPI_SUM, comm_, &request),
          "all_reduce_scalars");
    wait_for(request, "all_reduce_scalars");
    if (op == ReduceOp::Mean)
      for (double& value : values) value /= world_size();
  }

  void do_barrier() override {
    MPI_Request request;
    check(MPI_Ibarrier(comm_, &request), "barrier");
    wait_for(request, "barrier");
  }

  void do_abort_job(const std::string& message) override {
    std::fprintf(stderr, "cuface: %s; aborting the MPI job\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, EXIT_FAILURE);
  }

 private:
  [[noreturn]] void fail(const std::string& message) {
    failure_ = message;
    throw Error(message);
  }
  void check(int status, const char* what) {
    if (status != MPI_SUCCESS)
      fail("rank " + std::to_string(rank()) + ": MPI " + what + " failed: " + mpi_error_string(status));
  }
  void require_cpu(const Tensor& tensor, const char* what) {
    CUFACE_CHECK(!tensor.is_cuda(), std::string(what) + ": " + tensor.str() +
                                        ": the MPI communicator carries CPU tensors (GPU tensors go over NCCL)");
  }

  MPI_Comm comm_;
  bool owns_mpi_;  // MPI was initialised here, so it is finalised here
  double timeout_;
  MPI_Op bf16_sum_ = MPI_OP_NULL, bf16_max_ = MPI_OP_NULL;
  std::string failure_;  // set once a collective failed: the communicator is unusable
};

MpiCollective::~MpiCollective() {
  try {
    wait();
  } catch (const Error&) {
    // The communicator recorded the failure; its destructor ends the job.
  }
}

void MpiCollective::wait() {
  if (finished_) return;
  comm_.wait_for(request, what_);
  finish_();
  finished_ = true;
}

bool MpiCollective::test() {
  if (!finished_ && comm_.poll(request, what_)) {
    finish_();
    finished_ = true;
  }
  return finished_;
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() {
  int initialized = 0;
  MPI_CHECK(MPI_Initialized(&initialized));
  bool owns_mpi = !initialized;
  if (owns_mpi) {
    int finalized = 0;
    MPI_CHECK(MPI_Finalized(&finalized));
    CUFACE_CHECK(!finalized, "MPI was finalised already: create one communicator per process");
    // Funneled: collectives come from one thread. (The NCCL watchdog thread only ever calls MPI_Abort.)
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  }
  // Errors come back as codes, so they are reported with their call instead of killing the job silently.
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_Comm comm;
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm));  // our own tag space, whatever else uses MPI
  int rank = 0, world_size = 1, local_rank = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MPI_CHECK(MPI_Comm_size(comm, &world_size));
  // The ranks sharing this machine's memory, numbered in rank order: the local rank picks the GPU.
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  MPI_CHECK(MPI_Comm_rank(node, &local_rank));
  MPI_CHECK(MPI_Comm_free(&node));
  return std::make_unique<MpiCommunicator>(comm, rank, world_size, local_rank, owns_mpi);
}

}  // namespace cuface
#endif  // CUFACE_HAS_MPI
