#include "engine/communicator.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace cuface {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
  }
  return "unknown";
}

// ---- argument checks shared by every backend -----------------------------------------------------

std::unique_ptr<PendingCollective> Communicator::start_all_reduce(Context& ctx, Tensor& tensor, ReduceOp op,
                                                                  DType wire) {
  CUFACE_CHECK(tensor.defined(), "all_reduce: undefined tensor");
  DType dtype = tensor.dtype();
  CUFACE_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::I32,
               "all_reduce: " + tensor.str() + ": only f32, bf16 and i32 tensors are reduced");
  CUFACE_CHECK(!(op == ReduceOp::Mean && dtype == DType::I32), "all_reduce: mean of an i32 tensor is not defined");
  CUFACE_CHECK(wire == dtype || (dtype == DType::F32 && wire == DType::BF16),
               std::string("all_reduce: ") + tensor.str() + " cannot travel as " + dtype_name(wire));
  CUFACE_CHECK(!tensor.is_cuda() || ctx.is_cuda(), "all_reduce: GPU tensor with a CPU context");
  return do_start_all_reduce(ctx, tensor, op, wire);
}

void Communicator::all_reduce(Context& ctx, Tensor& tensor, ReduceOp op) {
  start_all_reduce(ctx, tensor, op, tensor.dtype())->wait();
}

void Communicator::broadcast(Context& ctx, Tensor& tensor, int root) {
  CUFACE_CHECK(tensor.defined(), "broadcast: undefined tensor");
  CUFACE_CHECK(0 <= root && root < world_size_, "broadcast: root " + std::to_string(root) + " is not a rank of " +
                                                   std::to_string(world_size_));
  CUFACE_CHECK(!tensor.is_cuda() || ctx.is_cuda(), "broadcast: GPU tensor with a CPU context");
  do_broadcast(ctx, tensor, root);
}

void Communicator::all_gather(Context& ctx, const Tensor& in, Tensor& out) {
  CUFACE_CHECK(in.defined() && out.defined() && in.rank() >= 1, "all_gather: undefined or scalar tensor");
  bool shapes_match = out.rank() == in.rank() && out.size(0) == in.size(0) * world_size_;
  for (int axis = 1; axis < in.rank(); ++axis) shapes_match = shapes_match && out.size(axis) == in.size(axis);
  CUFACE_CHECK(shapes_match && in.dtype() == out.dtype(),
               "all_gather: output " + out.str() + " does not hold " + std::to_string(world_size_) + " x " + in.str());
  check_same_device(in, out, "all_gather");
  CUFACE_CHECK(!in.is_cuda() || ctx.is_cuda(), "all_gather: GPU tensors with a CPU context");
  do_all_gather(ctx, in, out);
}

void Communicator::all_reduce_scalars(std::vector<double>& values, ReduceOp op) {
  if (!values.empty()) do_all_reduce_scalars(values, op);
}

void Communicator::barrier() { do_barrier(); }

void Communicator::abort_job(const std::string& message) {
  do_abort_job(message);
  std::_Exit(EXIT_FAILURE);
}

// ---- one process: nothing travels ------------------------------------------------------------------

namespace {

class FinishedCollective : public PendingCollective {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class SingleProcessCommunicator : public Communicator {
 public:
  SingleProcessCommunicator() : Communicator(0, 1, 0) {}
  const char* backend() const override { return "single"; }

 protected:
  void do_abort_job(const std::string& message) override {
    std::fprintf(stderr, "cuface: %s\n", message.c_str());
    std::fflush(stderr);
  }
  // Sum, mean and max over one rank are the identity, whatever the wire format.
  std::unique_ptr<PendingCollective> do_start_all_reduce(Context&, Tensor&, ReduceOp, DType) override {
    return std::make_unique<FinishedCollective>();
  }
  void do_broadcast(Context&, Tensor&, int) override {}
  void do_all_gather(Context&, const Tensor& in, Tensor& out) override { out.copy_from(in); }
  void do_all_reduce_scalars(std::vector<double>&, ReduceOp) override {}
  void do_barrier() override {}
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

// ---- choosing one ------------------------------------------------------------------------------------

bool mpi_launch_detected() {
  // Open MPI, MPICH/Intel MPI (Hydra PMI), PMIx launchers (Open MPI 5, srun --mpi=pmix), MVAPICH2.
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE"})
    if (std::getenv(variable)) return true;
  return false;
}

std::unique_ptr<Communicator> make_communicator(Device device) {
  if (!mpi_launch_detected()) return make_single_process_communicator();
  std::unique_ptr<Communicator> host = make_mpi_communicator();
  if (device == Device::CUDA) return make_nccl_communicator(std::move(host));
  return host;
}

double communication_timeout_seconds() {
  const char* text = std::getenv("CUFACE_COMM_TIMEOUT");
  if (!text) return 300.0;
  char* end = nullptr;
  double seconds = std::strtod(text, &end);
  CUFACE_CHECK(end != text && *end == '\0' && std::isfinite(seconds) && seconds > 0,
               std::string("CUFACE_COMM_TIMEOUT='") + text + "': expected a positive number of seconds");
  return seconds;
}

std::string no_progress_message(int rank, const char* what, double seconds) {
  std::ostringstream out;
  out << "rank " << rank << ": no progress in " << what << " for " << seconds
      << " s; another rank probably died (limit: CUFACE_COMM_TIMEOUT)";
  return out.str();
}

#if !CUFACE_HAS_MPI
std::unique_ptr<Communicator> make_mpi_communicator() {
  throw Error("started by an MPI launcher, but this build of cuface has no MPI (install an MPI library, e.g. "
              "libopenmpi-dev, and rebuild)");
}
#endif

#if !CUFACE_HAS_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator>) {
  throw Error("GPU collectives need NCCL, and this build of cuface has none (rebuild with CUDA and NCCL, or "
              "train several processes with --device cpu)");
}
#endif

}  // namespace cuface
