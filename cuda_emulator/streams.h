// Streams and events of the emulated device: asynchronous and adversarial.
//
// Every queued piece of work (a kernel grid, a copy, a memset, a library call, an event record) is an
// Operation that waits for the operations it must follow: the previous one on its stream, the
// recorded point of an event it waits for (cudaStreamWaitEvent), and the legacy default stream's
// implicit ordering against blocking streams. Nothing runs when it is queued. Work runs only when
// the host must see it finished (a synchronise, a blocking copy, an event query), and then only the
// operations that the finished one needs, in a seeded random order among independent ones. So the
// emulator is the laziest device allowed: a missing cudaStreamWaitEvent between two streams, or a
// host read without a synchronise, gives a wrong (NaN-poisoned or stale) result every time.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace cuda_emulator {

// All emulator state is guarded by one lock, held by every API call and while work runs.
std::recursive_mutex& api_mutex();

using OperationId = uint64_t;
OperationId enqueue_operation(cudaStream_t stream, std::string what, std::function<void()> work,
                              OperationId also_after = 0);
// Runs `id` and everything it waits for (nothing if already done).
void complete(OperationId id);
void complete_all();
bool is_done(OperationId id);
OperationId last_operation(cudaStream_t stream);
bool is_stream(cudaStream_t stream);

cudaStream_t create_stream(unsigned flags);
void destroy_stream(cudaStream_t stream);

// The operation being run now ("" outside device work), for messages.
const std::string& running_operation();

// ---- stream capture (cudaStreamBeginCapture ... cudaStreamEndCapture, cudaGraphLaunch) -------------
// Work queued on a capturing stream is recorded, not queued: a graph is the list of recorded
// operations with the ones each follows; launching it queues them all again, in that order.

struct CapturedOperation {
  std::string what;
  std::function<void()> work;
  std::vector<size_t> after;                     // indices of the recorded operations it follows
  std::function<void(OperationId)> on_queued;  // an external event record: the event's new point
};

struct CaptureSequence;

// Where a stream stands in a capture (an event recorded on it keeps this, a stream waiting for that
// event joins the capture there).
struct CapturePoint {
  std::shared_ptr<CaptureSequence> capture;  // null: not capturing
  std::vector<size_t> tail;                  // the recorded operations the next one follows
};

CapturePoint capture_point(cudaStream_t stream);
bool is_capturing(cudaStream_t stream);
// Whether a capture sequence started on `stream` is no longer valid.
bool capture_invalidated(cudaStream_t stream);
bool capture_ended(const CapturePoint& point);
// Makes `stream` follow `point` (cudaStreamWaitEvent on an event recorded during a capture); false
// when the stream is already part of another capture (the capture is invalidated).
bool join_capture(cudaStream_t stream, const CapturePoint& point);
// Invalidates the capture `stream` takes part in, with the reason cudaStreamEndCapture reports.
void invalidate_capture(cudaStream_t stream, const std::string& why);
// Records an operation on a capturing stream, returning its index (external event records).
size_t record_operation(cudaStream_t stream, CapturedOperation operation);

cudaError_t begin_capture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t end_capture(cudaStream_t stream, std::vector<CapturedOperation>* recorded);
// cudaThreadExchangeStreamCaptureMode.
cudaStreamCaptureMode exchange_thread_capture_mode(cudaStreamCaptureMode mode);
// Whether this thread may not make a call CUDA calls potentially unsafe during a capture (a
// cudaMalloc, a synchronisation, a blocking copy): if so, the captures it would break are
// invalidated with `call` as the reason and the caller returns cudaErrorStreamCaptureUnsupported.
bool unsafe_call_during_capture(const std::string& call);
// Queues a graph's operations on `stream` (cudaGraphLaunch).
void launch_recorded(const std::vector<CapturedOperation>& recorded, cudaStream_t stream);

}  // namespace cuda_emulator
