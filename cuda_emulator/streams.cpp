#include "cuda_emulator/streams.h"

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "cuda_emulator/device.h"
#include "cuda_emulator/errors.h"
#include "cuda_emulator/memory.h"
#include "cuda_emulator/seed.h"

struct CUstream_st {
  unsigned flags = cudaStreamDefault;  // cudaStreamNonBlocking: no implicit order with the legacy stream
  cuda_emulator::OperationId last = 0;
  cuda_emulator::CapturePoint capture;  // while the stream takes part in a capture sequence
};

namespace cuda_emulator {

// One cudaStreamBeginCapture ... cudaStreamEndCapture, shared by the streams that joined it.
struct CaptureSequence {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;  // the one that began it
  cudaStream_t origin = nullptr;
  std::vector<CapturedOperation> recorded;
  std::set<cudaStream_t> streams;  // the origin and the streams that joined
  std::string invalid;             // why the capture is no longer valid ("" while it is)
};

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
  std::set<std::shared_ptr<CaptureSequence>> captures;  // begun and not ended
};

Scheduler& scheduler() {
  static Scheduler* instance = new Scheduler;
  return *instance;
}

CUstream_st& resolve(cudaStream_t stream) { return stream ? *stream : scheduler().legacy; }

bool blocking(const CUstream_st& s) { return (s.flags & cudaStreamNonBlocking) == 0; }

OperationId add_operation(Operation op) {
  Scheduler& s = scheduler();
  const OperationId id = s.next_id++;
  s.pending.emplace(id, std::move(op));
  if (s.pending.size() > kMaxPending) complete(s.pending.begin()->first);
  return id;
}

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
  if (target.capture.capture) {
    // Waiting for work queued outside the capture cannot be part of the graph.
    if (also_after && !is_done(also_after))
      invalidate_capture(stream, what + " waits for work queued outside the capture");
    record_operation(stream, {std::move(what), std::move(work), {}, {}});
    return 0;
  }
  if (&target == &s.legacy)
    for (const auto& capture : s.captures)
      for (cudaStream_t member : capture->streams)
        if (blocking(*member) && capture->invalid.empty())
          capture->invalid = what + " on the legacy default stream, which a capturing blocking stream would wait for";
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
  const OperationId id = add_operation(std::move(op));
  target.last = id;
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

// ---- stream capture -------------------------------------------------------------------------------

namespace {
thread_local cudaStreamCaptureMode thread_capture_mode = cudaStreamCaptureModeGlobal;
}

CapturePoint capture_point(cudaStream_t stream) { return resolve(stream).capture; }
bool is_capturing(cudaStream_t stream) { return resolve(stream).capture.capture != nullptr; }

bool capture_invalidated(cudaStream_t stream) {
  const auto& capture = resolve(stream).capture.capture;
  return capture && !capture->invalid.empty();
}

bool capture_ended(const CapturePoint& point) { return scheduler().captures.count(point.capture) == 0; }

bool join_capture(cudaStream_t stream, const CapturePoint& point) {
  CUstream_st& target = resolve(stream);
  if (target.capture.capture && target.capture.capture != point.capture) {
    const std::string why = "cudaStreamWaitEvent joins two capture sequences";
    invalidate_capture(stream, why);
    if (point.capture->invalid.empty()) point.capture->invalid = why;
    return false;
  }
  if (!target.capture.capture) {
    target.capture = point;
    point.capture->streams.insert(&target);
    return true;
  }
  for (size_t index : point.tail)
    if (std::find(target.capture.tail.begin(), target.capture.tail.end(), index) == target.capture.tail.end())
      target.capture.tail.push_back(index);
  return true;
}

void invalidate_capture(cudaStream_t stream, const std::string& why) {
  const auto& capture = resolve(stream).capture.capture;
  if (capture && capture->invalid.empty()) capture->invalid = why;
}

size_t record_operation(cudaStream_t stream, CapturedOperation operation) {
  CapturePoint& point = resolve(stream).capture;
  operation.after = point.tail;
  const size_t index = point.capture->recorded.size();
  point.capture->recorded.push_back(std::move(operation));
  point.tail = {index};
  return index;
}

cudaError_t begin_capture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  CUstream_st& target = resolve(stream);
  if (&target == &scheduler().legacy)
    return set_error(cudaErrorStreamCaptureUnsupported, "the legacy default stream cannot be captured");
  if (target.capture.capture)
    return set_error(cudaErrorIllegalState, "cudaStreamBeginCapture on a stream that is already capturing");
  auto capture = std::make_shared<CaptureSequence>();
  capture->mode = mode;
  capture->thread = std::this_thread::get_id();
  capture->origin = stream;
  capture->streams.insert(stream);
  target.capture = {capture, {}};
  scheduler().captures.insert(capture);
  return cudaSuccess;
}

cudaError_t end_capture(cudaStream_t stream, std::vector<CapturedOperation>* recorded) {
  CUstream_st& target = resolve(stream);
  const std::shared_ptr<CaptureSequence> capture = target.capture.capture;
  if (!capture || capture->origin != stream)
    return set_error(cudaErrorIllegalState, "cudaStreamEndCapture on a stream that did not begin a capture");
  if (capture->mode != cudaStreamCaptureModeRelaxed && capture->thread != std::this_thread::get_id())
    return set_error(cudaErrorStreamCaptureWrongThread,
                     "cudaStreamEndCapture from another thread than the one that began it");
  // Every recorded operation must lead to the origin's last one: a forked stream's work is joined back.
  std::vector<bool> joined(capture->recorded.size(), false);
  std::vector<size_t> stack = target.capture.tail;
  while (!stack.empty()) {
    const size_t index = stack.back();
    stack.pop_back();
    if (joined[index]) continue;
    joined[index] = true;
    for (size_t before : capture->recorded[index].after) stack.push_back(before);
  }
  std::string invalid = capture->invalid;
  if (invalid.empty() && std::find(joined.begin(), joined.end(), false) != joined.end())
    invalid = "work recorded on a stream that was not joined back into the origin stream "
              "(cudaErrorStreamCaptureUnjoined)";
  for (cudaStream_t member : capture->streams) resolve(member).capture = {};
  scheduler().captures.erase(capture);
  if (!invalid.empty()) return set_error(cudaErrorStreamCaptureInvalidated, invalid);
  *recorded = std::move(capture->recorded);
  return cudaSuccess;
}

cudaStreamCaptureMode exchange_thread_capture_mode(cudaStreamCaptureMode mode) {
  std::swap(mode, thread_capture_mode);
  return mode;
}

bool unsafe_call_during_capture(const std::string& call) {
  if (thread_capture_mode == cudaStreamCaptureModeRelaxed) return false;
  bool prohibited = false;
  for (const auto& capture : scheduler().captures) {
    if (capture->mode == cudaStreamCaptureModeRelaxed) continue;
    const bool own = capture->thread == std::this_thread::get_id();
    if (own || (capture->mode == cudaStreamCaptureModeGlobal && thread_capture_mode == cudaStreamCaptureModeGlobal)) {
      prohibited = true;
      if (capture->invalid.empty()) capture->invalid = call + " during stream capture";
    }
  }
  return prohibited;
}

void launch_recorded(const std::vector<CapturedOperation>& recorded, cudaStream_t stream) {
  // The graph starts after the stream's earlier work and ends before its later work.
  const OperationId start = enqueue_operation(stream, "cudaGraphLaunch", {});
  std::vector<OperationId> ids(recorded.size());
  std::vector<bool> followed(recorded.size(), false);
  for (size_t i = 0; i < recorded.size(); ++i) {
    const CapturedOperation& op = recorded[i];
    Operation queued{"graph: " + op.what, op.work, {}};
    if (op.after.empty() && !is_done(start)) queued.after.push_back(start);
    for (size_t before : op.after) {
      if (!is_done(ids[before])) queued.after.push_back(ids[before]);
      followed[before] = true;
    }
    ids[i] = add_operation(std::move(queued));
    if (op.on_queued) op.on_queued(ids[i]);
  }
  Operation end{"cudaGraphLaunch end", {}, {}};
  if (!is_done(start)) end.after.push_back(start);
  for (size_t i = 0; i < recorded.size(); ++i)
    if (!followed[i] && !is_done(ids[i])) end.after.push_back(ids[i]);
  resolve(stream).last = add_operation(std::move(end));
}

void enqueue(cudaStream_t stream, std::string what, std::function<void()> work) {
  std::lock_guard<std::recursive_mutex> lock(api_mutex());
  if (!is_stream(stream)) fail(what + ": queued on a destroyed or unknown stream");
  enqueue_operation(stream, std::move(what), std::move(work));
}

}  // namespace cuda_emulator
