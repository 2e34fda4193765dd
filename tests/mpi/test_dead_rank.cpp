// Failure tests, DISABLED_ so an ordinary run skips them: CTest runs each alone under
// tests/mpi/expect_job_ends.sh, which requires the whole job to end with an error, quickly, and with
// output that names the problem.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "mpi/world.h"

namespace cuface::testing {
namespace {

// Rank 1 exits without MPI_Finalize while the others enter a collective: mpirun ends the job.
TEST(DISABLED_DeadRank, PeerExitsBeforeCollective) {
  if (world().world_size() < 2) GTEST_SKIP() << "needs two ranks";
  if (world().rank() == 1) {
    std::fprintf(stderr, "rank 1: exiting without MPI_Finalize (simulated crash)\n");
    std::fflush(stderr);
    std::_Exit(3);
  }
  Context ctx(Device::CPU);
  Tensor x = Tensor::zeros({1000});
  world().all_reduce(ctx, x, ReduceOp::Sum);
  ADD_FAILURE() << "all_reduce returned although rank 1 died";
}

// Rank 1 hangs: the others' watchdog (CUFACE_COMM_TIMEOUT, set to 2 s by the test) gives up with a
// clear error, and the communicator's destructor aborts the job.
TEST(DISABLED_HungRank, WatchdogEndsTheJob) {
  if (world().world_size() < 2) GTEST_SKIP() << "needs two ranks";
  if (world().rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(60));
    ADD_FAILURE() << "rank 1 was not ended by the job's abort";
    return;
  }
  Context ctx(Device::CPU);
  Tensor x = Tensor::zeros({1000});
  double timeout = communication_timeout_seconds();
  auto start = std::chrono::steady_clock::now();
  try {
    world().all_reduce(ctx, x, ReduceOp::Sum);
    ADD_FAILURE() << "all_reduce returned although rank 1 never joined";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no progress in all_reduce"), std::string::npos) << error.what();
  }
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, timeout);
  EXPECT_LT(waited, timeout + 5);
}

}  // namespace
}  // namespace cuface::testing
