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
#include <mutex>
#include <string>

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

}  // namespace cuda_emulator
