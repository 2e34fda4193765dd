// The CUDA runtime API of the emulated device: device properties from a profile, memory, copies,
// streams and events on top of memory.cpp and streams.cpp, the error state, and the atomics.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "cuda_emulator/device.h"
#include "cuda_emulator/errors.h"
#include "cuda_emulator/grid.h"
#include "cuda_emulator/memory.h"
#include "cuda_emulator/seed.h"
#include "cuda_emulator/streams.h"

struct CUevent_st {
  unsigned flags = cudaEventDefault;
  cuda_emulator::OperationId recorded = 0;  // 0: never recorded (complete)
  cuda_emulator::CapturePoint captured;     // recorded during a capture: a point in its graph
  bool queried_once = false;                // cudaEventQuery says "not ready" once before it runs the work
  std::shared_ptr<std::chrono::steady_clock::time_point> reached;
};

namespace cuda_emulator {

// ---- profiles ---------------------------------------------------------------------------------------

int code_version() {
  const DeviceProfile& device = profile();
  const int own = device.major * 10 + device.minor;
  const char* text = std::getenv("CUFACE_EMU_CODE_VERSION");
  if (!text || !*text) return own;
  char* end = nullptr;
  const long version = std::strtol(text, &end, 10);
  if (*end != '\0' || version < 50 || version > own) {
    std::fprintf(stderr, "cuface CUDA emulator: CUFACE_EMU_CODE_VERSION=%s is not an architecture from 50 to %d (%s)\n",
                 text, own, device.name);
    std::abort();
  }
  return int(version);
}

const DeviceProfile& profile() {
  static const DeviceProfile h100{"cuface emulated H100 (sm_90)", 9, 0, 132, size_t(80) << 30, 227 * 1024, true};
  static const DeviceProfile a100{"cuface emulated A100 (sm_80)", 8, 0, 108, size_t(80) << 30, 163 * 1024, false};
  static const DeviceProfile* chosen = [] {
    const char* name = std::getenv("CUFACE_EMU_PROFILE");
    if (!name || std::strcmp(name, "h100") == 0) return &h100;
    if (std::strcmp(name, "a100") == 0) return &a100;
    std::fprintf(stderr, "cuda emulator: CUFACE_EMU_PROFILE=%s is not a profile (h100 or a100)\n", name);
    std::exit(2);
  }();
  return *chosen;
}

uint64_t seed_for(const char* purpose) {
  static const uint64_t base = [] {
    const char* text = std::getenv("CUFACE_EMU_SEED");
    return text ? std::strtoull(text, nullptr, 10) : 1;
  }();
  uint64_t h = base * 0x9E3779B97F4A7C15ull;
  for (const char* c = purpose; *c; ++c) h = (h ^ uint64_t(*c)) * 0x100000001B3ull;
  return h;
}

// ---- errors -----------------------------------------------------------------------------------------

namespace {
thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_detail;

const char* error_name(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
  }
  return "unknown error";
}

// Every API entry point holds the emulator's lock and has the fault handler in place.
struct ApiCall {
  std::lock_guard<std::recursive_mutex> lock{api_mutex()};
  ApiCall() { install_fault_handler(); }
};

bool is_device_pointer(const void* pointer) { return is_device_range(pointer, 1); }
}  // namespace

cudaError_t set_error(cudaError_t error, const std::string& detail) {
  last_error = error;
  last_detail = std::string(error_name(error)) + " (cuda emulator: " + detail + ")";
  return error;
}

void fail(const std::string& message) {
  std::fprintf(stderr, "cuda emulator: %s\n", message.c_str());
  const std::string& operation = running_operation();
  if (!operation.empty()) std::fprintf(stderr, "cuda emulator: while running %s\n", operation.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---- atomics (out of line: the race check does not see them) ------------------------------------------

template <class T>
T atomic_add_generic(T* address, T value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
float atomic_add(float* address, float value) {
  float old = *address;
  float sum = old + value;
  while (!__atomic_compare_exchange(address, &old, &sum, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) sum = old + value;
  return old;
}
double atomic_add(double* address, double value) {
  double old = *address;
  double sum = old + value;
  while (!__atomic_compare_exchange(address, &old, &sum, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) sum = old + value;
  return old;
}
int atomic_add(int* address, int value) { return atomic_add_generic(address, value); }
unsigned atomic_add(unsigned* address, unsigned value) { return atomic_add_generic(address, value); }
unsigned long long atomic_add(unsigned long long* address, unsigned long long value) {
  return atomic_add_generic(address, value);
}
int atomic_max(int* address, int value) {
  int old = *address;
  while (old < value && !__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
int atomic_cas(int* address, int compare, int value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
unsigned atomic_cas(unsigned* address, unsigned compare, unsigned value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
int atomic_exchange(int* address, int value) { return __atomic_exchange_n(address, value, __ATOMIC_RELAXED); }

}  // namespace cuda_emulator

using namespace cuda_emulator;

// ---- device -------------------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice, "the emulator has one device, 0");
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice, "the emulator has one device, 0");
  const DeviceProfile& p = profile();
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "%s", p.name);
  prop->totalGlobalMem = p.global_memory;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = p.major;
  prop->minor = p.minor;
  prop->multiProcessorCount = p.multiprocessors;
  prop->sharedMemPerBlockOptin = size_t(p.max_shared_per_block_optin);
  prop->clusterLaunch = p.clusters ? 1 : 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice, "the emulator has one device, 0");
  const DeviceProfile& p = profile();
  switch (attribute) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = p.multiprocessors; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = p.max_shared_per_block_optin; return cudaSuccess;
    case cudaDevAttrClusterLaunch: *value = p.clusters ? 1 : 0; return cudaSuccess;
  }
  return set_error(cudaErrorInvalidValue, "device attribute " + std::to_string(int(attribute)) + " not emulated");
}

cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}

// A call CUDA does not allow while this thread captures: the capture is invalidated and the call fails.
static cudaError_t refuse_during_capture(const std::string& call) {
  return set_error(cudaErrorStreamCaptureUnsupported, call + " during stream capture");
}

cudaError_t cudaDeviceSynchronize() {
  ApiCall call;
  if (unsafe_call_during_capture("cudaDeviceSynchronize")) return refuse_during_capture("cudaDeviceSynchronize");
  complete_all();
  return cudaSuccess;
}

// The emulated device's memory is the host's: allocations beyond CUFACE_EMU_MEMORY_MB (default
// 4096) fail as a full GPU's would, so tests sized for a real card skip instead of swapping.
size_t emulated_memory_bytes() {
  static const size_t bytes = [] {
    const char* text = std::getenv("CUFACE_EMU_MEMORY_MB");
    return size_t(text ? std::strtoull(text, nullptr, 10) : 4096) << 20;
  }();
  return bytes;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *total = emulated_memory_bytes();
  *free = *total - std::min(*total, device_bytes_in_use());
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t error = last_error;
  last_error = cudaSuccess;
  return error;
}
cudaError_t cudaPeekAtLastError() { return last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  // The emulator's explanation of the last error, when that is the error asked about.
  if (error != cudaSuccess && last_detail.rfind(error_name(error), 0) == 0) return last_detail.c_str();
  return error_name(error);
}

// ---- memory -------------------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** pointer, size_t bytes) {
  ApiCall call;
  if (unsafe_call_during_capture("cudaMalloc")) return refuse_during_capture("cudaMalloc");
  if (device_bytes_in_use() + bytes > emulated_memory_bytes())
    return set_error(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(bytes) + " bytes");
  *pointer = device_allocate(bytes);
  return *pointer ? cudaSuccess : set_error(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(bytes) + " bytes");
}

cudaError_t cudaFree(void* pointer) {
  ApiCall call;
  if (!pointer) return cudaSuccess;
  if (unsafe_call_during_capture("cudaFree")) return refuse_during_capture("cudaFree");
  complete_all();  // cudaFree waits for the device, as CUDA's does
  return device_free(pointer) ? cudaSuccess
                              : set_error(cudaErrorInvalidValue, "cudaFree of a pointer cudaMalloc did not return");
}

cudaError_t cudaHostAlloc(void** pointer, size_t bytes, unsigned) {
  ApiCall call;
  if (unsafe_call_during_capture("cudaHostAlloc")) return refuse_during_capture("cudaHostAlloc");
  *pointer = pinned_allocate(bytes);
  return *pointer ? cudaSuccess : set_error(cudaErrorMemoryAllocation, "cudaHostAlloc of " + std::to_string(bytes));
}
cudaError_t cudaMallocHost(void** pointer, size_t bytes) { return cudaHostAlloc(pointer, bytes, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* pointer) {
  ApiCall call;
  if (unsafe_call_during_capture("cudaFreeHost")) return refuse_during_capture("cudaFreeHost");
  complete_all();
  return pinned_free(pointer) ? cudaSuccess
                              : set_error(cudaErrorInvalidValue, "cudaFreeHost of a pointer cudaHostAlloc did not return");
}

namespace {

// Checks a copy's two sides against its kind; returns an explanation or "".
std::string check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool dst_device = is_device_pointer(dst), src_device = is_device_pointer(src);
  if (dst_device && !is_device_range(dst, bytes))
    return "the destination's " + std::to_string(bytes) + " bytes run past the end of its device allocation";
  if (src_device && !is_device_range(src, bytes))
    return "the source's " + std::to_string(bytes) + " bytes run past the end of its device allocation";
  const bool want_dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyDefault && (dst_device != want_dst_device || src_device != want_src_device))
    return "the pointers do not match the copy's kind";
  return "";
}

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream, bool blocking) {
  ApiCall call;
  if (bytes == 0) return cudaSuccess;
  const std::string problem = check_copy(dst, src, bytes, kind);
  if (!problem.empty()) return set_error(cudaErrorInvalidValue, "cudaMemcpy: " + problem);
  if (!is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync on an unknown stream");
  const bool host_dst = !is_device_pointer(dst), host_src = !is_device_pointer(src);
  if (blocking && unsafe_call_during_capture("cudaMemcpy")) return refuse_during_capture("cudaMemcpy");
  if (is_capturing(stream) && ((host_src && !is_pinned(src, bytes)) || (host_dst && !is_pinned(dst, bytes)))) {
    invalidate_capture(stream, "cudaMemcpyAsync with pageable host memory");
    return refuse_during_capture("cudaMemcpyAsync with pageable host memory");
  }
  // Pageable host memory is staged as CUDA stages it: the source is read at the call, and a copy
  // into pageable memory is finished when the call returns. Pinned memory is read and written
  // when the copy runs, in stream order.
  std::shared_ptr<std::vector<char>> staged;
  if (host_src && !is_pinned(src, bytes)) staged = std::make_shared<std::vector<char>>((const char*)src, (const char*)src + bytes);
  const void* from = staged ? staged->data() : src;
  const OperationId id = enqueue_operation(stream, "cudaMemcpy of " + std::to_string(bytes) + " bytes",
                                           [dst, from, bytes, staged] { std::memcpy(dst, from, bytes); });
  if (blocking || (host_dst && !is_pinned(dst, bytes))) complete(id);
  return cudaSuccess;
}

cudaError_t fill(void* pointer, int value, size_t bytes, cudaStream_t stream, bool blocking) {
  ApiCall call;
  if (bytes == 0) return cudaSuccess;
  if (!is_device_range(pointer, bytes))
    return set_error(cudaErrorInvalidValue, "cudaMemset of " + std::to_string(bytes) +
                                                " bytes outside one device allocation");
  if (!is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaMemsetAsync on an unknown stream");
  if (blocking && unsafe_call_during_capture("cudaMemset")) return refuse_during_capture("cudaMemset");
  const OperationId id = enqueue_operation(stream, "cudaMemset of " + std::to_string(bytes) + " bytes",
                                           [pointer, value, bytes] { std::memset(pointer, value, bytes); });
  if (blocking) complete(id);
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return copy(dst, src, bytes, kind, nullptr, true);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  return copy(dst, src, bytes, kind, stream, false);
}
cudaError_t cudaMemset(void* pointer, int value, size_t bytes) { return fill(pointer, value, bytes, nullptr, true); }
cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t stream) {
  return fill(pointer, value, bytes, stream, false);
}

// ---- streams ------------------------------------------------------------------------------------------

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  ApiCall call;
  *stream = create_stream(flags);
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned flags, int) {
  return cudaStreamCreateWithFlags(stream, flags);
}
cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
  *least = 0;
  *greatest = -5;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  ApiCall call;
  if (!stream || !is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamDestroy");
  destroy_stream(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  ApiCall call;
  if (!is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize");
  if (is_capturing(stream)) {
    invalidate_capture(stream, "cudaStreamSynchronize of a capturing stream");
    return refuse_during_capture("cudaStreamSynchronize");
  }
  complete(last_operation(stream));
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  ApiCall call;
  if (!is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamQuery");
  if (is_capturing(stream)) {
    invalidate_capture(stream, "cudaStreamQuery of a capturing stream");
    return refuse_during_capture("cudaStreamQuery");
  }
  if (is_done(last_operation(stream))) return cudaSuccess;
  complete(last_operation(stream));  // "not ready" now, done at the next query: polling loops end
  return cudaErrorNotReady;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  ApiCall call;
  if (!is_stream(stream) || !event) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent");
  if (event->captured.capture) {
    // An event recorded during a capture marks a point in its graph: the stream joins the capture there.
    if (capture_ended(event->captured))
      return set_error(cudaErrorStreamCaptureUnsupported,
                       "cudaStreamWaitEvent for an event recorded in a finished capture");
    if (!join_capture(stream, event->captured)) return refuse_during_capture("cudaStreamWaitEvent across captures");
    return cudaSuccess;
  }
  enqueue_operation(stream, "cudaStreamWaitEvent", {}, event->recorded);
  return cudaSuccess;
}

// ---- events -------------------------------------------------------------------------------------------

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  *event = new CUevent_st;
  (*event)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  ApiCall call;
  if (!event || !is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaEventRecord");
  if (is_capturing(stream)) {  // a point of the graph, for streams that wait for it
    event->captured = capture_point(stream);
    return cudaSuccess;
  }
  auto reached = std::make_shared<std::chrono::steady_clock::time_point>();
  event->reached = reached;
  event->queried_once = false;
  event->captured = {};
  event->recorded = enqueue_operation(stream, "cudaEventRecord", [reached] { *reached = std::chrono::steady_clock::now(); });
  return cudaSuccess;
}
cudaError_t cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream, unsigned flags) {
  ApiCall call;
  if (!(flags & cudaEventRecordExternal) || !is_capturing(stream)) return cudaEventRecord(event, stream);
  if (!event) return set_error(cudaErrorInvalidResourceHandle, "cudaEventRecordWithFlags");
  // An external event node: each launch of the graph records the event, for the host or other streams.
  auto reached = std::make_shared<std::chrono::steady_clock::time_point>();
  record_operation(stream, {"cudaEventRecord (external)", [reached] { *reached = std::chrono::steady_clock::now(); },
                            {}, [event, reached](OperationId id) {
                              event->recorded = id;
                              event->reached = reached;
                              event->queried_once = false;
                              event->captured = {};
                            }});
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  ApiCall call;
  if (!event) return set_error(cudaErrorInvalidResourceHandle, "cudaEventSynchronize");
  if (event->captured.capture) return refuse_during_capture("cudaEventSynchronize of an event recorded in a capture");
  complete(event->recorded);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  ApiCall call;
  if (!event) return set_error(cudaErrorInvalidResourceHandle, "cudaEventQuery");
  if (event->captured.capture) return refuse_during_capture("cudaEventQuery of an event recorded in a capture");
  if (is_done(event->recorded)) return cudaSuccess;
  // The first query of unfinished work says "not ready"; the next one runs it, so that a polling
  // loop sees both answers and still ends.
  if (!event->queried_once) {
    event->queried_once = true;
    return cudaErrorNotReady;
  }
  complete(event->recorded);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* milliseconds, cudaEvent_t start, cudaEvent_t end) {
  ApiCall call;
  if (!start || !end || (start->flags & cudaEventDisableTiming) || (end->flags & cudaEventDisableTiming))
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime of an event without timing");
  if (!is_done(start->recorded) || !is_done(end->recorded)) return cudaErrorNotReady;
  *milliseconds = std::chrono::duration<float, std::milli>(*end->reached - *start->reached).count();
  return cudaSuccess;
}

// ---- stream capture and graphs -------------------------------------------------------------------------

struct CUgraph_st {
  std::vector<cuda_emulator::CapturedOperation> recorded;
};
struct CUgraphExec_st {
  std::vector<cuda_emulator::CapturedOperation> recorded;
};

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  ApiCall call;
  if (!is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamBeginCapture");
  return begin_capture(stream, mode);
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  ApiCall call;
  if (!is_stream(stream) || !graph) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamEndCapture");
  *graph = nullptr;
  std::vector<CapturedOperation> recorded;
  if (const cudaError_t error = end_capture(stream, &recorded); error != cudaSuccess) return error;
  *graph = new CUgraph_st{std::move(recorded)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  ApiCall call;
  if (!is_stream(stream) || !status) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamIsCapturing");
  *status = !is_capturing(stream)         ? cudaStreamCaptureStatusNone
            : capture_invalidated(stream) ? cudaStreamCaptureStatusInvalidated
                                          : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  if (!mode) return set_error(cudaErrorInvalidValue, "cudaThreadExchangeStreamCaptureMode");
  *mode = exchange_thread_capture_mode(*mode);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  ApiCall call;
  if (!exec || !graph) return set_error(cudaErrorInvalidValue, "cudaGraphInstantiate");
  *exec = new CUgraphExec_st{graph->recorded};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  ApiCall call;
  if (!exec || !is_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaGraphLaunch");
  if (is_capturing(stream)) return refuse_during_capture("cudaGraphLaunch (the emulator captures no graph launches)");
  launch_recorded(exec->recorded, stream);
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
