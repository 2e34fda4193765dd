#include "cuda_emulator/grid.h"

#include <cuda_runtime.h>

#include <setjmp.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "cuda_emulator/device.h"
#include "cuda_emulator/errors.h"
#include "cuda_emulator/fiber.h"
#include "cuda_emulator/memory.h"
#include "cuda_emulator/seed.h"
#include "cuda_emulator/streams.h"

namespace cuda_emulator {
namespace {

constexpr int kWarp = 32;
constexpr size_t kDefaultSharedLimit = 48 * 1024;  // per block, until the kernel opts in to more

// ---- kernels: attributes and static shared memory layout ---------------------------------------------

struct Declaration {
  const void* tag;
  size_t offset;  // from the start of the block's static shared memory
  size_t bytes;
};

struct KernelInfo {
  int max_dynamic_shared = -1;  // -1: not raised (48 KiB - static)
  bool non_portable_clusters = false;
  std::vector<Declaration> declarations;  // learnt as they execute
  size_t static_bytes = 0;
};

std::map<KernelKey, KernelInfo>& kernels() {
  static auto* instance = new std::map<KernelKey, KernelInfo>;
  return *instance;
}

size_t dynamic_limit(const KernelInfo& info) {
  return info.max_dynamic_shared >= 0 ? size_t(info.max_dynamic_shared) : kDefaultSharedLimit - info.static_bytes;
}

// ---- the threads of one block or cluster --------------------------------------------------------------

enum class Wait { None, Block, Warp, Cluster, Exited };

struct ThreadState {
  uint3 thread_index;
  uint3 block_index;
  dim3 block_dim;
  dim3 grid_dim;
};

struct Thread {
  ThreadState state;
  int block = 0;   // index within the cluster
  int linear = 0;  // x + y * bx + z * bx * by within its block
  Wait wait = Wait::None;
  Site site{};
  int predicate = 0;
  // warp operations
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  uint64_t value = 0;
  int argument = 0;
  int width = kWarp;
  uint64_t result = 0;
  Fiber* fiber = nullptr;
};

struct Block {
  dim3 index;
  int first_thread = 0;  // in the cluster's thread array
  int threads = 0;
  int exited = 0;
  int at_barrier = 0;
  Site barrier_site{};
  uint32_t epoch = 1;  // bumped by every barrier: accesses in different epochs are ordered
  std::vector<uint32_t> warp_generation;  // bumped by every warp operation of the whole warp
  std::vector<unsigned char> shared;      // dynamic, then static shared memory
  size_t static_base = 0;
  // Race check: per 4-byte word of shared memory, the last accesses within the current epoch.
  struct Access {
    uint32_t epoch = 0;
    int writer = -1;  // thread (cluster index) that wrote, or -1
    uint32_t writer_generation = 0;
    int reader = -1;  // first thread that read, or -1
    uint32_t reader_generation = 0;
    bool other_readers = false;
  };
  std::vector<Access> shadow;
};

struct Grid {
  KernelKey kernel = nullptr;
  KernelInfo* info = nullptr;
  LaunchShape shape;
  const std::function<void()>* body = nullptr;
  std::vector<Block> blocks;  // of the cluster running now
  std::vector<Thread> threads;
  // The lowest and highest address of the blocks' shared memory: most accesses the race check sees
  // are to global memory and leave at this test.
  const unsigned char* shared_low = nullptr;
  const unsigned char* shared_high = nullptr;
  int at_cluster_barrier = 0;
  int exited = 0;
  std::mt19937_64 random;
  std::vector<int> ready;
};

thread_local Grid* running_grid = nullptr;
thread_local Thread* running_thread = nullptr;
thread_local bool probing = false;  // kernel_attributes: learning declarations, no thread exists
thread_local KernelInfo* probe_info = nullptr;
thread_local sigjmp_buf probe_fault;  // where a probe's fault returns to
thread_local std::vector<std::unique_ptr<Fiber>> fiber_pool;

std::string dims(const dim3& d) {
  char text[48];
  std::snprintf(text, sizeof text, "(%u, %u, %u)", d.x, d.y, d.z);
  return text;
}
std::string dims(const uint3& d) { return dims(dim3(d.x, d.y, d.z)); }
std::string where(const Site& s) { return std::string(s.file) + ":" + std::to_string(s.line); }

std::string kernel_label(const Grid& g) { return "kernel " + function_name(g.kernel); }

std::string block_label(const Grid& g, const Block& b) { return kernel_label(g) + ", block " + dims(b.index); }

[[noreturn]] void grid_fail(const std::string& message) { fail(message); }

Block& block_of(Grid& g, const Thread& t) { return g.blocks[size_t(t.block)]; }

void make_ready(Grid& g, int thread) {
  // Insert at a random place: the order in which waiting threads continue is random too.
  g.ready.push_back(thread);
  std::swap(g.ready.back(), g.ready[g.random() % g.ready.size()]);
}

// ---- barriers -----------------------------------------------------------------------------------------

void release_block(Grid& g, Block& b) {
  int count = 0;
  for (int i = 0; i < b.threads; ++i) count += g.threads[size_t(b.first_thread + i)].predicate != 0;
  for (int i = 0; i < b.threads; ++i) {
    Thread& t = g.threads[size_t(b.first_thread + i)];
    t.wait = Wait::None;
    t.result = uint64_t(count);
    make_ready(g, b.first_thread + i);
  }
  b.at_barrier = 0;
  ++b.epoch;
}

void arrive_at_block_barrier(Grid& g, int index) {
  Thread& t = g.threads[size_t(index)];
  Block& b = block_of(g, t);
  if (b.at_barrier == 0) {
    b.barrier_site = t.site;
  } else if (b.barrier_site.line != t.site.line || std::string(b.barrier_site.file) != t.site.file) {
    grid_fail(block_label(g, b) + ": threads wait at different barriers, " + where(b.barrier_site) + " and " +
              where(t.site) + " (thread " + dims(t.state.thread_index) + ")");
  }
  if (b.exited > 0)
    grid_fail(block_label(g, b) + ": __syncthreads at " + where(t.site) + " reached by only part of the block (" +
              std::to_string(b.exited) + " of its " + std::to_string(b.threads) + " threads have exited)");
  if (++b.at_barrier == b.threads) release_block(g, b);
}

void release_cluster(Grid& g) {
  for (size_t i = 0; i < g.threads.size(); ++i) {
    g.threads[i].wait = Wait::None;
    make_ready(g, int(i));
  }
  for (Block& b : g.blocks) ++b.epoch;
  g.at_cluster_barrier = 0;
}

// ---- warp operations -------------------------------------------------------------------------------

uint64_t warp_result(const Grid& g, const Block& b, int warp_first, const Thread& t) {
  const int lane = t.linear - warp_first;
  const int width = t.width;
  const int segment = lane / width * width;  // shuffles work within segments of `width` lanes
  auto lane_value = [&](int source) {
    if (source < segment || source >= segment + width) return t.value;  // outside: the caller's own value
    return g.threads[size_t(b.first_thread + warp_first + source)].value;
  };
  switch (t.op) {
    case WarpOp::Sync: return 0;
    case WarpOp::ShuffleIndex: return lane_value(segment + (t.argument % width + width) % width);
    case WarpOp::ShuffleXor: return lane_value(lane ^ t.argument);
    case WarpOp::ShuffleDown: return lane_value(lane + t.argument);
    case WarpOp::ShuffleUp: return lane_value(lane - t.argument);
    case WarpOp::Ballot: {
      uint64_t bits = 0;
      for (int l = 0; l < kWarp; ++l)
        if (t.mask & (1u << l)) bits |= (g.threads[size_t(b.first_thread + warp_first + l)].value != 0 ? 1u : 0u) << l;
      return bits;
    }
  }
  return 0;
}

void arrive_at_warp_operation(Grid& g, int index) {
  Thread& t = g.threads[size_t(index)];
  Block& b = block_of(g, t);
  const int warp_first = t.linear / kWarp * kWarp;
  const int lanes_present = std::min(kWarp, b.threads - warp_first);
  const int lane = t.linear - warp_first;
  auto who = [&] { return block_label(g, b) + ", thread " + dims(t.state.thread_index) + " at " + where(t.site); };
  if (!(t.mask & (1u << lane))) grid_fail(who() + ": a warp operation whose mask does not name its own lane");
  // Every lane the mask names must exist and reach the same operation.
  int arrived = 0;
  for (int l = 0; l < kWarp; ++l) {
    if (!(t.mask & (1u << l))) continue;
    if (l >= lanes_present)
      grid_fail(who() + ": the mask 0x" + [&] { char s[16]; std::snprintf(s, sizeof s, "%08x", t.mask); return std::string(s); }() +
                " names lane " + std::to_string(l) + ", which does not exist (the block has " +
                std::to_string(b.threads) + " threads)");
    const Thread& other = g.threads[size_t(b.first_thread + warp_first + l)];
    if (other.wait == Wait::Exited)
      grid_fail(who() + ": the mask names lane " + std::to_string(l) + ", which has exited");
    if (other.wait == Wait::Warp && other.mask == t.mask) {
      if (other.op != t.op || other.site.line != t.site.line || std::string(other.site.file) != t.site.file)
        grid_fail(who() + ": lanes of one warp meet at different warp operations (" + where(other.site) + ")");
      ++arrived;
    }
  }
  if (arrived < __builtin_popcount(t.mask)) return;
  // All there: every lane gets its result, then they all continue.
  for (int l = 0; l < kWarp; ++l)
    if (t.mask & (1u << l)) {
      Thread& other = g.threads[size_t(b.first_thread + warp_first + l)];
      other.result = warp_result(g, b, warp_first, other);
    }
  for (int l = 0; l < kWarp; ++l)
    if (t.mask & (1u << l)) {
      g.threads[size_t(b.first_thread + warp_first + l)].wait = Wait::None;
      make_ready(g, b.first_thread + warp_first + l);
    }
  if (__builtin_popcount(t.mask) == lanes_present) ++b.warp_generation[size_t(warp_first / kWarp)];
}

// ---- the scheduler of one block or cluster ---------------------------------------------------------

std::string describe_waits(const Grid& g) {
  std::string text;
  int shown = 0;
  for (const Thread& t : g.threads) {
    if (t.wait == Wait::Exited || t.wait == Wait::None || shown >= 4) continue;
    const char* what = t.wait == Wait::Block ? "__syncthreads" : t.wait == Wait::Warp ? "a warp operation" : "cluster.sync()";
    text += "\n  thread " + dims(t.state.thread_index) + " of block " + dims(g.blocks[size_t(t.block)].index) +
            " waits at " + what + " (" + where(t.site) + ")";
    ++shown;
  }
  return text;
}

void run_threads(Grid& g) {
  if (fiber_pool.size() < g.threads.size()) {
    fiber_pool.reserve(g.threads.size());
    while (fiber_pool.size() < g.threads.size()) fiber_pool.push_back(std::make_unique<Fiber>());
  }
  g.ready.clear();
  for (size_t i = 0; i < g.threads.size(); ++i) {
    g.threads[i].fiber = fiber_pool[i].get();
    g.ready.push_back(int(i));
  }
  std::shuffle(g.ready.begin(), g.ready.end(), g.random);
  std::vector<bool> started(g.threads.size(), false);
  size_t live = g.threads.size();
  while (live > 0) {
    if (g.ready.empty())
      grid_fail(kernel_label(g) + ": the threads wait for each other for ever (a barrier or warp operation that "
                "not every thread it needs reaches):" + describe_waits(g));
    const int index = g.ready.back();
    g.ready.pop_back();
    Thread& t = g.threads[size_t(index)];
    running_thread = &t;
    threadIdx = t.state.thread_index;
    blockIdx = t.state.block_index;
    if (!started[size_t(index)]) {
      started[size_t(index)] = true;
      t.fiber->start(g.body);
    } else {
      t.fiber->resume();
    }
    running_thread = nullptr;
    if (t.fiber->finished()) {
      t.wait = Wait::Exited;
      --live;
      Block& b = block_of(g, t);
      ++b.exited;
      if (b.at_barrier > 0)
        grid_fail(block_label(g, b) + ": thread " + dims(t.state.thread_index) + " exited while " +
                  std::to_string(b.at_barrier) + " threads wait at __syncthreads (" + where(b.barrier_site) +
                  "): a barrier must be reached by every thread of the block");
      if (g.at_cluster_barrier > 0)
        grid_fail(kernel_label(g) + ": a thread exited while others wait at cluster.sync()");
      continue;
    }
    switch (t.wait) {
      case Wait::Block: arrive_at_block_barrier(g, index); break;
      case Wait::Warp: arrive_at_warp_operation(g, index); break;
      case Wait::Cluster:
        if (++g.at_cluster_barrier == int(g.threads.size())) release_cluster(g);
        break;
      default: grid_fail(kernel_label(g) + ": a thread suspended without waiting for anything");
    }
  }
}

// Suspends the running CUDA thread until the scheduler lets it continue; returns its result.
uint64_t wait_here(Wait wait, Site site) {
  Thread* t = running_thread;
  if (!t) fail("a barrier or warp operation called outside a kernel");
  t->wait = wait;
  t->site = site;
  Fiber::suspend();
  return t->result;
}

void note_shared_range(Grid& g) {
  g.shared_low = g.blocks.front().shared.data();
  g.shared_high = g.shared_low;
  for (const Block& b : g.blocks) {
    g.shared_low = std::min(g.shared_low, b.shared.data());
    g.shared_high = std::max(g.shared_high, b.shared.data() + b.shared.size());
  }
}

void run_cluster(Grid& g, const dim3& first_block) {
  const LaunchShape& s = g.shape;
  const int block_threads = int(s.block.x * s.block.y * s.block.z);
  const unsigned cluster_blocks = s.cluster.x * s.cluster.y * s.cluster.z;
  g.blocks.resize(cluster_blocks);
  g.threads.resize(size_t(cluster_blocks) * size_t(block_threads));
  const size_t shared_bytes = s.dynamic_shared_bytes + 15 + g.info->static_bytes;
  int b = 0;
  for (unsigned z = 0; z < s.cluster.z; ++z)
    for (unsigned y = 0; y < s.cluster.y; ++y)
      for (unsigned x = 0; x < s.cluster.x; ++x, ++b) {
        Block& block = g.blocks[size_t(b)];
        block.index = dim3(first_block.x + x, first_block.y + y, first_block.z + z);
        block.first_thread = b * block_threads;
        block.threads = block_threads;
        block.exited = block.at_barrier = 0;
        block.epoch = 1;
        block.warp_generation.assign(size_t((block_threads + kWarp - 1) / kWarp), 0);
        block.static_base = (s.dynamic_shared_bytes + 15) / 16 * 16;
        // Reserved for the most a block may have, so that declarations learnt while the block runs
        // never move the memory that its threads already point into.
        block.shared.reserve(s.dynamic_shared_bytes + 16 + size_t(profile().max_shared_per_block_optin));
        block.shared.assign(shared_bytes, 0xFF);  // never-written shared memory reads as NaN
        block.shadow.assign((shared_bytes + 3) / 4, Block::Access{});
        int linear = 0;
        for (unsigned tz = 0; tz < s.block.z; ++tz)
          for (unsigned ty = 0; ty < s.block.y; ++ty)
            for (unsigned tx = 0; tx < s.block.x; ++tx, ++linear) {
              Thread& t = g.threads[size_t(block.first_thread + linear)];
              t = Thread{};
              t.state = {uint3{tx, ty, tz}, uint3{block.index.x, block.index.y, block.index.z}, s.block, s.grid};
              t.block = b;
              t.linear = linear;
            }
      }
  g.at_cluster_barrier = 0;
  note_shared_range(g);
  blockDim = s.block;
  gridDim = s.grid;
  run_threads(g);
}

void run_grid(Grid& g) {
  const LaunchShape& s = g.shape;
  // Clusters (or single blocks) in a random order: blocks may run in any order on a GPU.
  const dim3 clusters(s.grid.x / s.cluster.x, s.grid.y / s.cluster.y, s.grid.z / s.cluster.z);
  const uint64_t count = uint64_t(clusters.x) * clusters.y * clusters.z;
  std::vector<uint64_t> order(count);
  for (uint64_t i = 0; i < count; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), g.random);
  running_grid = &g;
  for (uint64_t c : order) {
    const unsigned x = unsigned(c % clusters.x), y = unsigned(c / clusters.x % clusters.y),
                   z = unsigned(c / (uint64_t(clusters.x) * clusters.y));
    run_cluster(g, dim3(x * s.cluster.x, y * s.cluster.y, z * s.cluster.z));
  }
  running_grid = nullptr;
}

}  // namespace

// ---- the device built-ins ---------------------------------------------------------------------------

bool end_probe_at_fault() {
  if (!probing) return false;
  siglongjmp(probe_fault, 1);
}

int block_barrier(int predicate, Site site) {
  if (probing) return predicate != 0;  // the probe is one thread
  if (running_thread) running_thread->predicate = predicate;
  return int(wait_here(Wait::Block, site));
}

uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int argument, int width, Site site) {
  if (probing) return value;  // the probe is one thread: every lane it reads is itself
  Thread* t = running_thread;
  if (!t) fail("a warp operation called outside a kernel");
  if (width <= 0 || width > kWarp || (width & (width - 1)))
    fail("a shuffle width of " + std::to_string(width) + " at " + where(site) + " (a power of two up to 32)");
  t->op = op;
  t->mask = mask;
  t->value = value;
  t->argument = argument;
  t->width = width;
  return wait_here(Wait::Warp, site);
}

void cluster_barrier(Site site) {
  if (!probing) wait_here(Wait::Cluster, site);
}

void* cluster_map_shared(const void* address, unsigned rank) {
  if (probing) return const_cast<void*>(address);
  Grid* g = running_grid;
  Thread* t = running_thread;
  if (!g || !t) fail("map_shared_rank called outside a kernel");
  if (rank >= g->blocks.size())
    fail(describe_running_thread() + ": map_shared_rank to block " + std::to_string(rank) + " of a cluster of " +
         std::to_string(g->blocks.size()));
  const Block& own = block_of(*g, *t);
  const auto* p = static_cast<const unsigned char*>(address);
  if (p < own.shared.data() || p >= own.shared.data() + own.shared.size())
    fail(describe_running_thread() + ": map_shared_rank of an address that is not this block's shared memory");
  return const_cast<unsigned char*>(g->blocks[rank].shared.data()) + (p - own.shared.data());
}

unsigned cluster_block_rank() {
  if (probing) return 0;
  Thread* t = running_thread;
  if (!t) fail("cluster block_rank called outside a kernel");
  return unsigned(t->block);
}

unsigned cluster_size() { return running_grid ? unsigned(running_grid->blocks.size()) : 1; }

void trap(const char* why) { fail(describe_running_thread() + ": " + why); }

void* block_shared(const void* tag, size_t bytes, size_t alignment) {
  static thread_local std::vector<unsigned char> probe_space;
  Grid* g = running_grid;
  KernelInfo* info = probing ? probe_info : (g ? g->info : nullptr);
  if (!info) fail("a __shared__ declaration outside a kernel");
  const Declaration* found = nullptr;
  for (const Declaration& d : info->declarations)
    if (d.tag == tag) found = &d;
  if (!found) {
    const size_t offset = (info->static_bytes + alignment - 1) / alignment * alignment;
    info->declarations.push_back({tag, offset, bytes});
    info->static_bytes = offset + bytes;
    found = &info->declarations.back();
    if (g) {
      // Learnt while running: check the limit now, and grow this launch's blocks to hold it.
      if (g->shape.dynamic_shared_bytes > dynamic_limit(*info) ||
          info->static_bytes + g->shape.dynamic_shared_bytes > size_t(profile().max_shared_per_block_optin))
        fail(kernel_label(*g) + " uses " + std::to_string(info->static_bytes) + " bytes of static and " +
             std::to_string(g->shape.dynamic_shared_bytes) + " bytes of dynamic shared memory: more than its limit of " +
             std::to_string(dynamic_limit(*info) + info->static_bytes) +
             " bytes (48 KiB unless cudaFuncAttributeMaxDynamicSharedMemorySize is raised; the launch would fail)");
      for (Block& b : g->blocks) {
        const size_t needed = b.static_base + info->static_bytes;
        if (b.shared.size() < needed) {
          if (b.at_barrier || b.exited) fail(kernel_label(*g) + ": emulator cannot grow shared memory mid-block");
          b.shared.resize(needed, 0xFF);
          b.shadow.resize((needed + 3) / 4);
        }
      }
      note_shared_range(*g);
    }
  }
  if (probing) {  // nothing is read or written before the probe ends; any address will do
    if (probe_space.size() < found->offset + found->bytes) probe_space.resize(found->offset + found->bytes);
    return probe_space.data() + found->offset;
  }
  Block& b = block_of(*g, *running_thread);
  return b.shared.data() + b.static_base + found->offset;
}

void* dynamic_shared() {
  if (probing) return nullptr;
  Grid* g = running_grid;
  if (!g || !running_thread) fail("extern __shared__ memory used outside a kernel");
  return block_of(*g, *running_thread).shared.data();
}

std::string describe_running_thread() {
  if (!running_grid || !running_thread) return "";
  return kernel_label(*running_grid) + ", block " + dims(running_thread->state.block_index) + ", thread " +
         dims(running_thread->state.thread_index);
}

std::string function_name(const void* function) {
  static std::map<const void*, std::string> known;  // addr2line is slow: once per function
  if (auto it = known.find(function); it != known.end()) return it->second;
  std::string& name = known[function];
  std::string where = describe_code_address(function);
  // "file:line (name)": the name is what a reader looks for first.
  const size_t open = where.find(" (");
  if (open == std::string::npos) {
    char text[32];
    std::snprintf(text, sizeof text, "%p", function);
    return name = text;
  }
  return name = where.substr(open + 2, where.size() - open - 3) + " [" + where.substr(0, open) + "]";
}

// ---- launches ----------------------------------------------------------------------------------------

cudaError_t submit_launch(KernelKey kernel, const LaunchShape& shape, cudaStream_t stream,
                          std::function<void()> thread_body) {
  std::lock_guard<std::recursive_mutex> lock(api_mutex());
  const DeviceProfile& device = profile();
  KernelInfo& info = kernels()[kernel];
  const dim3 &grid = shape.grid, &block = shape.block, &cluster = shape.cluster;
  auto bad = [&](const std::string& why) {
    return set_error(cudaErrorInvalidConfiguration, "launch of " + function_name(kernel) + ": " + why);
  };
  const uint64_t block_threads = uint64_t(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
    return bad("a grid or block dimension is 0");
  if (block_threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    return bad("block " + dims(block) + " exceeds 1024 threads (x, y <= 1024, z <= 64)");
  if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return bad("grid " + dims(grid) + " exceeds (2^31 - 1, 65535, 65535)");
  if (shape.dynamic_shared_bytes > dynamic_limit(info) ||
      shape.dynamic_shared_bytes + info.static_bytes > size_t(device.max_shared_per_block_optin))
    return set_error(cudaErrorInvalidValue,
                     "launch of " + function_name(kernel) + ": " + std::to_string(shape.dynamic_shared_bytes) +
                         " bytes of dynamic shared memory exceed its limit of " + std::to_string(dynamic_limit(info)) +
                         " bytes (48 KiB - static unless cudaFuncAttributeMaxDynamicSharedMemorySize is raised)");
  const unsigned cluster_blocks = cluster.x * cluster.y * cluster.z;
  if (cluster_blocks > 1) {
    if (!device.clusters) return set_error(cudaErrorNotSupported, "launch of " + function_name(kernel) +
                                                                      ": thread-block clusters need sm_90, this is " +
                                                                      device.name);
    if (code_version() < 90)
      return set_error(cudaErrorNotSupported, "launch of " + function_name(kernel) + " with a cluster: its code was built "
                                              "for sm_" + std::to_string(code_version()) +
                                              " (CUFACE_EMU_CODE_VERSION), which has no cluster support");
    if (grid.x % cluster.x || grid.y % cluster.y || grid.z % cluster.z)
      return bad("grid " + dims(grid) + " is not a multiple of the cluster " + dims(cluster));
    const unsigned limit = info.non_portable_clusters ? 16 : 8;
    if (cluster_blocks > limit)
      return bad("a cluster of " + std::to_string(cluster_blocks) + " blocks exceeds " + std::to_string(limit) +
                 (info.non_portable_clusters ? "" : " (the portable size; set cudaFuncAttributeNonPortableClusterSizeAllowed)"));
  }
  if (!is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "launch on a destroyed or unknown stream");
  auto grid_state = std::make_shared<Grid>();
  grid_state->kernel = kernel;
  grid_state->info = &info;
  grid_state->shape = shape;
  grid_state->shape.cluster = cluster_blocks > 1 ? cluster : dim3(1, 1, 1);
  auto body = std::make_shared<std::function<void()>>(std::move(thread_body));
  static uint64_t launches = 0;
  grid_state->random.seed(seed_for("grid") + 0x9E3779B97F4A7C15ull * ++launches);
  enqueue_operation(stream, "kernel " + dims(grid) + " x " + dims(block), [grid_state, body] {
    grid_state->body = body.get();
    run_grid(*grid_state);
  });
  return cudaSuccess;
}

cudaError_t set_kernel_attribute(KernelKey kernel, cudaFuncAttribute attribute, int value) {
  std::lock_guard<std::recursive_mutex> lock(api_mutex());
  KernelInfo& info = kernels()[kernel];
  switch (attribute) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 || size_t(value) + info.static_bytes > size_t(profile().max_shared_per_block_optin))
        return set_error(cudaErrorInvalidValue, "cudaFuncAttributeMaxDynamicSharedMemorySize " + std::to_string(value) +
                                                    " + static " + std::to_string(info.static_bytes) +
                                                    " exceeds the device's " +
                                                    std::to_string(profile().max_shared_per_block_optin));
      info.max_dynamic_shared = value;
      return cudaSuccess;
    case cudaFuncAttributeNonPortableClusterSizeAllowed:
      info.non_portable_clusters = value != 0;
      return cudaSuccess;
  }
  return set_error(cudaErrorInvalidValue, "unknown function attribute");
}

cudaError_t kernel_attributes(KernelKey kernel, const std::function<void()>& probe, cudaFuncAttributes* attributes) {
  std::lock_guard<std::recursive_mutex> lock(api_mutex());
  KernelInfo& info = kernels()[kernel];
  if (info.declarations.empty()) {
    // Run the kernel as one thread of a one-block grid with zeroed arguments, until it returns or
    // faults (its pointers are null): its __shared__ declarations register themselves in `info`
    // as they execute. Declarations it did not reach are learnt at the first launch.
    probe_info = &info;
    probing = true;
    threadIdx = blockIdx = uint3{0, 0, 0};
    blockDim = gridDim = dim3(1, 1, 1);
    const std::function<void()> guarded = [&probe] {
      if (sigsetjmp(probe_fault, 1) == 0) probe();
    };
    Fiber fiber;
    fiber.start(&guarded);
    probing = false;
    probe_info = nullptr;
  }
  *attributes = cudaFuncAttributes{};
  attributes->sharedSizeBytes = info.static_bytes;
  attributes->maxThreadsPerBlock = 1024;
  attributes->numRegs = 32;
  attributes->ptxVersion = attributes->binaryVersion = code_version();
  attributes->maxDynamicSharedSizeBytes = int(dynamic_limit(info));
  return cudaSuccess;
}

// ---- the shared-memory race check ---------------------------------------------------------------------
// kernels/cuda/*.cu are compiled with -fsanitize=thread but linked without ThreadSanitizer's runtime:
// the compiler calls __tsan_read4(address) & co. before every load and store, and the emulator
// defines them. An access outside the running block's shared memory returns at once.
namespace {

// Two accesses by different threads of one block between the same barriers conflict unless they
// are lanes of one warp with a warp-wide operation (__syncwarp, a shuffle) between them.
bool ordered(const Grid& g, const Thread& t, int other, uint32_t other_generation) {
  const Thread& o = g.threads[size_t(other)];
  return o.block == t.block && o.linear / kWarp == t.linear / kWarp &&
         g.blocks[size_t(t.block)].warp_generation[size_t(t.linear / kWarp)] != other_generation;
}

[[noreturn]] void report_race(const Grid& g, const Thread& t, const Block& b, size_t offset, bool write, int other,
                              bool other_wrote, const void* pc) {
  const Thread& o = g.threads[size_t(other)];
  const std::string code = describe_code_address(pc);
  fail("shared-memory race in " + block_label(g, b) + ": thread " + dims(t.state.thread_index) +
       (write ? " writes" : " reads") + " shared byte " + std::to_string(offset) + " that thread " +
       dims(o.state.thread_index) + (other_wrote ? " wrote" : " read") +
       " since the last barrier (a missing __syncthreads?)" + (code.empty() ? "" : ", at " + code));
}

void check_shared_access(const void* address, size_t size, bool write, const void* pc) {
  Grid* g = running_grid;
  Thread* t = running_thread;
  const auto* p = static_cast<const unsigned char*>(address);
  if (!g || !t || p >= g->shared_high || p + size <= g->shared_low) return;
  for (Block& b : g->blocks) {
    const unsigned char* base = b.shared.data();
    if (p < base || p >= base + b.shared.size()) continue;
    const int me = int(t - g->threads.data());
    const uint32_t generation = g->blocks[size_t(t->block)].warp_generation[size_t(t->linear / kWarp)];
    const size_t last = std::min(size_t(p + size - 1 - base), b.shared.size() - 1) / 4;
    for (size_t word = size_t(p - base) / 4; word <= last; ++word) {
      Block::Access& a = b.shadow[word];
      if (a.epoch != b.epoch) a = Block::Access{b.epoch};
      if (a.writer >= 0 && a.writer != me && !ordered(*g, *t, a.writer, a.writer_generation))
        report_race(*g, *t, b, word * 4, write, a.writer, true, pc);
      if (write) {
        if (a.reader >= 0 && a.reader != me && !ordered(*g, *t, a.reader, a.reader_generation))
          report_race(*g, *t, b, word * 4, write, a.reader, false, pc);
        if (a.other_readers && !ordered(*g, *t, a.reader, a.reader_generation))
          report_race(*g, *t, b, word * 4, write, a.reader, false, pc);
        a.writer = me;
        a.writer_generation = generation;
        a.reader = -1;
        a.other_readers = false;
      } else if (a.reader < 0) {
        a.reader = me;
        a.reader_generation = generation;
      } else if (a.reader != me) {
        a.other_readers = true;
      }
    }
    return;
  }
}

}  // namespace
}  // namespace cuda_emulator

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

#define CUDA_EMULATOR_ACCESS_HOOKS(size)                                                             \
  extern "C" void __tsan_read##size(void* address) {                                                 \
    cuda_emulator::check_shared_access(address, size, false, __builtin_return_address(0));           \
  }                                                                                                  \
  extern "C" void __tsan_write##size(void* address) {                                                \
    cuda_emulator::check_shared_access(address, size, true, __builtin_return_address(0));            \
  }                                                                                                  \
  extern "C" void __tsan_unaligned_read##size(void* address) {                                       \
    cuda_emulator::check_shared_access(address, size, false, __builtin_return_address(0));           \
  }                                                                                                  \
  extern "C" void __tsan_unaligned_write##size(void* address) {                                      \
    cuda_emulator::check_shared_access(address, size, true, __builtin_return_address(0));            \
  }
CUDA_EMULATOR_ACCESS_HOOKS(1)
CUDA_EMULATOR_ACCESS_HOOKS(2)
CUDA_EMULATOR_ACCESS_HOOKS(4)
CUDA_EMULATOR_ACCESS_HOOKS(8)
CUDA_EMULATOR_ACCESS_HOOKS(16)
extern "C" void __tsan_read_range(void* address, size_t size) {
  cuda_emulator::check_shared_access(address, size, false, __builtin_return_address(0));
}
extern "C" void __tsan_write_range(void* address, size_t size) {
  cuda_emulator::check_shared_access(address, size, true, __builtin_return_address(0));
}
// Called by instrumented code at start-up and on function entry and exit: nothing to do here.
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
// Atomic operations in instrumented files (reference counts of std::shared_ptr, std::atomic in host
// code beside the kernels) become these calls: do them, sequentially consistent whatever was asked.
#define CUDA_EMULATOR_ATOMICS(bits, type)                                                                     \
  extern "C" type __tsan_atomic##bits##_load(const volatile type* a, int) {                                  \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                              \
  }                                                                                                           \
  extern "C" void __tsan_atomic##bits##_store(volatile type* a, type v, int) {                              \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                                 \
  }                                                                                                           \
  extern "C" type __tsan_atomic##bits##_exchange(volatile type* a, type v, int) {                           \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                       \
  }                                                                                                           \
  extern "C" type __tsan_atomic##bits##_fetch_add(volatile type* a, type v, int) {                          \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  extern "C" type __tsan_atomic##bits##_fetch_sub(volatile type* a, type v, int) {                          \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  extern "C" type __tsan_atomic##bits##_fetch_and(volatile type* a, type v, int) {                          \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  extern "C" type __tsan_atomic##bits##_fetch_or(volatile type* a, type v, int) {                           \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                           \
  extern "C" type __tsan_atomic##bits##_fetch_xor(volatile type* a, type v, int) {                          \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  extern "C" int __tsan_atomic##bits##_compare_exchange_strong(volatile type* a, type* expected, type v, int, \
                                                               int) {                                        \
    return __atomic_compare_exchange_n(a, expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);            \
  }                                                                                                           \
  extern "C" int __tsan_atomic##bits##_compare_exchange_weak(volatile type* a, type* expected, type v, int,   \
                                                             int) {                                          \
    return __atomic_compare_exchange_n(a, expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);            \
  }                                                                                                           \
  extern "C" type __tsan_atomic##bits##_compare_exchange_val(volatile type* a, type expected, type v, int,    \
                                                             int) {                                          \
    __atomic_compare_exchange_n(a, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                  \
    return expected;                                                                                          \
  }
CUDA_EMULATOR_ATOMICS(8, char)
CUDA_EMULATOR_ATOMICS(16, short)
CUDA_EMULATOR_ATOMICS(32, int)
CUDA_EMULATOR_ATOMICS(64, long)
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
// Virtual-table pointer updates (objects with virtual functions constructed in instrumented files).
extern "C" void __tsan_vptr_update(void** slot, void* value) { *slot = value; }
extern "C" void __tsan_vptr_read(void**) {}
