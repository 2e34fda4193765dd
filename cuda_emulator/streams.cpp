#include "cuda_emulator/streams.h"

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "cuda_emulator/device.h"
#include "cuda_emulator/memory.h"
#include "cuda_emulator/seed.h"

struct CUstream_st {
  unsigned flags = cudaStreamDefault;  // cudaStreamNonBlocking: no implicit order with the legacy stream
  cuda_emulator::OperationId last = 0;
};

namespace cuda_emulator {
namespace {

// Bound on queued work: past it the oldest operations run, so a loop that never synchronises does
// not grow without limit (a real device also runs ahead of the host by a bounded queue).
constexpr size_t kMaxPending = 4096;

struct Operation {
  std::string what;
  std::function<void()> work;
  std::vector<OperationId> after;
};

struct Scheduler {
  std::map<OperationId, Operation> pending;  // ordered by id: the oldest first
  OperationId next_id = 1;
  CUstream_st legacy;                          // stream 0
  std::set<cudaStream_t> streams;              // created and not destroyed
  std::mt19937_64 random{seed_for("streams")};
  std::string running;
};

Scheduler& scheduler() {
  static Scheduler* instance = new Scheduler;
  return *instance;
}

CUstream_st& resolve(cudaStream_t stream) { return stream ? *stream : scheduler().legacy; }

bool blocking(const CUstream_st& s) { return (s.flags & cudaStreamNonBlocking) == 0; }

void run(OperationId id) {
  Scheduler& s = scheduler();
  auto node = s.pending.extract(id);
  s.running = node.mapped().what;
  if (node.mapped().work) node.mapped().work();
  s.running.clear();
}

}  // namespace

std::recursive_mutex& api_mutex() {
  static std::recursive_mutex* mutex = new std::recursive_mutex;
  return *mutex;
}

bool is_stream(cudaStream_t stream) { return !stream || scheduler().streams.count(stream) != 0; }

cudaStream_t create_stream(unsigned flags) {
  auto* stream = new CUstream_st;
  stream->flags = flags;
  scheduler().streams.insert(stream);
  return stream;
}

void destroy_stream(cudaStream_t stream) {
  // Work already queued still runs (as CUDA documents); only the handle goes.
  scheduler().streams.erase(stream);
  delete stream;
}

OperationId enqueue_operation(cudaStream_t stream, std::string what, std::function<void()> work,
                              OperationId also_after) {
  Scheduler& s = scheduler();
  CUstream_st& target = resolve(stream);
  Operation op{std::move(what), std::move(work), {}};
  auto wait_for = [&](OperationId id) {
    if (id && !is_done(id)) op.after.push_back(id);
  };
  wait_for(target.last);
  wait_for(also_after);
  // The legacy default stream waits for all blocking streams, and they wait for it.
  if (&target == &s.legacy) {
    for (cudaStream_t other : s.streams)
      if (blocking(*other)) wait_for(other->last);
  } else if (blocking(target)) {
    wait_for(s.legacy.last);
  }
  const OperationId id = s.next_id++;
  s.pending.emplace(id, std::move(op));
  target.last = id;
  if (s.pending.size() > kMaxPending) complete(s.pending.begin()->first);
  return id;
}

bool is_done(OperationId id) { return scheduler().pending.count(id) == 0; }

OperationId last_operation(cudaStream_t stream) { return resolve(stream).last; }

void complete(OperationId target) {
  Scheduler& s = scheduler();
  if (is_done(target)) return;
  open_device_memory();
  // Depth-first over what `target` waits for; independent operations in a random order.
  std::vector<OperationId> stack{target};
  while (!stack.empty()) {
    const OperationId id = stack.back();
    auto it = s.pending.find(id);
    if (it == s.pending.end()) {
      stack.pop_back();
      continue;
    }
    std::vector<OperationId> waiting;
    for (OperationId before : it->second.after)
      if (!is_done(before)) waiting.push_back(before);
    if (waiting.empty()) {
      run(id);
      stack.pop_back();
    } else {
      stack.push_back(waiting[s.random() % waiting.size()]);
    }
  }
  close_device_memory();
}

void complete_all() {
  Scheduler& s = scheduler();
  while (!s.pending.empty()) {
    // Pick any pending operation: the order among independent streams stays random.
    auto it = s.pending.begin();
    std::advance(it, s.random() % s.pending.size());
    complete(it->first);
  }
}

const std::string& running_operation() { return scheduler().running; }

void enqueue(cudaStream_t stream, std::string what, std::function<void()> work) {
  std::lock_guard<std::recursive_mutex> lock(api_mutex());
  if (!is_stream(stream)) fail(what + ": queued on a destroyed or unknown stream");
  enqueue_operation(stream, std::move(what), std::move(work));
}

}  // namespace cuda_emulator
