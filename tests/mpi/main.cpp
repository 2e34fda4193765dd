// test_mpi: run by CTest under mpiexec with 2 and 3 ranks (and runnable alone, as one rank). Every rank
// runs the same tests; ranks other than 0 print failures only. mpiexec exits non-zero if any rank does.
#include <gtest/gtest.h>

#include "mpi/world.h"

namespace cuface::testing {
namespace {
std::unique_ptr<Communicator> the_world;
}
Communicator& world() { return *the_world; }
}  // namespace cuface::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  cuface::testing::the_world = cuface::make_communicator(cuface::Device::CPU);
  if (cuface::testing::the_world->rank() != 0) GTEST_FLAG_SET(brief, true);
  int result = RUN_ALL_TESTS();
  cuface::testing::the_world.reset();  // MPI_Finalize (or the job's abort after a failed collective)
  return result;
}
