// The emulator's stand-in for the part of cooperative groups cuface uses: thread-block clusters
// (sm_90), their barrier and distributed shared memory.
#pragma once
#include <cuda_runtime.h>

namespace cooperative_groups {

class cluster_group {
 public:
  void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    ::cuda_emulator::cluster_barrier({file, line});
  }
  // The address of `address`'s variable in the shared memory of block `rank` of the cluster.
  template <class T>
  T* map_shared_rank(T* address, unsigned rank) const {
    return static_cast<T*>(::cuda_emulator::cluster_map_shared(address, rank));
  }
  unsigned block_rank() const { return ::cuda_emulator::cluster_block_rank(); }
  unsigned num_blocks() const { return ::cuda_emulator::cluster_size(); }
};

inline cluster_group this_cluster() { return {}; }

}  // namespace cooperative_groups
