// Communicator: the collectives of data-parallel training behind one interface.
//
//   single process   world size 1: reductions are no-ops, all-gather is a copy. `cuface train` with
//                    no MPI launcher gets this one and never initialises MPI.
//   MPI              CPU tensors and host scalars (Open MPI, MPICH, ...): ranks come from mpirun.
//   NCCL             GPU tensors, one communicator per process on the GPU of its local rank; the NCCL
//                    unique id travels over MPI; CPU tensors and scalars go to the MPI communicator.
//
// Every blocking wait has a deadline (CUFACE_COMM_TIMEOUT seconds, default 300): a rank whose peers
// stopped answering reports "rank R: no progress in <op> for T s; another rank probably died" and the
// MPI job is aborted, so no rank hangs forever. (A rank that exits without MPI_Finalize makes mpirun
// kill the job at once; the deadline catches peers that hang instead.)
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/tensor.h"

namespace cuface {

enum class ReduceOp : uint8_t { Sum, Mean, Max };
const char* reduce_op_name(ReduceOp op);

// A collective in flight. wait() makes its result visible: on the GPU it orders the context's stream
// after the collective (the host does not block); on the CPU it blocks until the data has arrived.
// Destroying an unwaited collective waits for it (its buffers must outlive it).
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
  // Drives progress without blocking (MPI moves non-blocking collectives only inside MPI calls);
  // true once the collective has finished.
  virtual bool test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }  // index among the ranks on this machine: its GPU
  virtual const char* backend() const = 0;        // "single", "mpi", "nccl"

  // In place over all ranks: sum, mean (sum / world size) or element-wise max. f32, bf16 and i32
  // tensors (mean is not defined for i32). Every rank ends with the same bits.
  void all_reduce(Context& ctx, Tensor& tensor, ReduceOp op);
  // The same, started now and finished by wait(), so it overlaps with later work. `wire` is the
  // format on the network: the tensor's dtype, or BF16 for an f32 tensor (half the traffic; the values
  // are rounded to bf16 before the reduction and every partial sum is rounded to bf16 again, so a sum
  // over K ranks carries K roundings of relative size 2^-8 each: an error up to ~K * 2^-8 of the sum
  // of magnitudes. Fine for gradients, which SGD averages over many steps; not for statistics or
  // weights.
  std::unique_ptr<PendingCollective> start_all_reduce(Context& ctx, Tensor& tensor, ReduceOp op, DType wire);
  // `tensor` on rank `root` is copied into `tensor` on every rank (any dtype).
  void broadcast(Context& ctx, Tensor& tensor, int root);
  // `out` [world * n, ...] receives every rank's `in` [n, ...] in rank order (any dtype).
  void all_gather(Context& ctx, const Tensor& in, Tensor& out);
  // Host values (losses, counts) reduced in float64 over all ranks.
  void all_reduce_scalars(std::vector<double>& values, ReduceOp op = ReduceOp::Sum);
  void barrier();

  // Prints `message` (which names this rank: "rank R: ...") and ends every rank of the job now. For
  // failures a rank cannot recover from (a watchdog that gave up on a collective). A rank that leaves
  // on an error while the others may be inside collectives should call it rather than return: MPI's
  // finalisation would wait for them until their deadline.
  [[noreturn]] void abort_job(const std::string& message);

 protected:
  Communicator(int rank, int world_size, int local_rank)
      : rank_(rank), world_size_(world_size), local_rank_(local_rank) {}

  // Arguments are validated by the public functions above before these run.
  virtual std::unique_ptr<PendingCollective> do_start_all_reduce(Context& ctx, Tensor& tensor, ReduceOp op,
                                                                 DType wire) = 0;
  virtual void do_broadcast(Context& ctx, Tensor& tensor, int root) = 0;
  virtual void do_all_gather(Context& ctx, const Tensor& in, Tensor& out) = 0;
  virtual void do_all_reduce_scalars(std::vector<double>& values, ReduceOp op) = 0;
  virtual void do_barrier() = 0;
  // Prints `message` and ends the job (MPI_Abort); abort_job exits should this return.
  virtual void do_abort_job(const std::string& message) = 0;

 private:
  int rank_, world_size_, local_rank_;
};

// The communicator for this process: MPI (+ NCCL when `device` is CUDA) when launched by an MPI
// launcher (mpirun/mpiexec/srun: detected from its environment, see mpi_launch_detected), the single
// process one otherwise. Create it before the Context: a GPU rank runs on GPU local_rank().
// One per process (MPI cannot be initialised twice).
std::unique_ptr<Communicator> make_communicator(Device device);

// The parts, for tests and for callers that choose themselves.
std::unique_ptr<Communicator> make_single_process_communicator();
std::unique_ptr<Communicator> make_mpi_communicator();  // initialises MPI; throws in a build without MPI
// GPU collectives over NCCL on GPU `host->local_rank()`; `host` carries CPU tensors, scalars and the
// NCCL unique id (a single process communicator gives NCCL with world size 1). Throws without NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host);

// True when an MPI launcher started this process (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, ...).
bool mpi_launch_detected();
// CUFACE_COMM_TIMEOUT in seconds (default 300): how long a collective may make no progress.
double communication_timeout_seconds();
// "rank R: no progress in <what> for T s; another rank probably died".
std::string no_progress_message(int rank, const char* what, double seconds);

}  // namespace cuface
