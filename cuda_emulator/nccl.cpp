// Stand-ins for the NCCL calls cuface makes, for a communicator of one rank (the emulator has one
// device and one process), written from NCCL's documentation. Arguments are checked as NCCL checks
// them (ncclInvalidArgument, with the detail in ncclGetLastError); collectives are queued on their
// stream like NCCL's kernels. Over one rank, all-reduce (any operation), broadcast and all-gather
// leave recvbuff equal to sendbuff: a copy, or nothing when in place.
#include <nccl.h>

#include <cstring>
#include <string>

#include "library_support.h"

struct ncclComm {
  int rank = 0;
  int nranks = 1;
};

namespace cuda_emulator {
namespace {

// Marks the ids ncclGetUniqueId made, so an id that never travelled from rank 0 is caught.
constexpr char kIdMark[] = "cuface emulated NCCL unique id";

thread_local std::string last_error;  // as NCCL's: per thread

LiveHandles<ncclComm_t>& live_comms() {
  static LiveHandles<ncclComm_t> comms;
  return comms;
}

ncclResult_t error(ncclResult_t result, const std::string& detail) {
  last_error = detail;
  return result;
}

size_t type_bytes(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    case ncclNumTypes: break;
  }
  return 0;
}

// The checks every collective makes first: a live communicator and a known data type.
ncclResult_t check_comm_and_type(const std::string& call, ncclComm_t comm, ncclDataType_t type) {
  if (comm == nullptr) return error(ncclInvalidArgument, call + ": comm is null");
  live_comms().require(comm, call);
  if (type_bytes(type) == 0) return error(ncclInvalidArgument, call + ": unknown datatype " + std::to_string(type));
  return ncclSuccess;
}

// NCCL checks that the buffers are device memory and reports a host pointer as an invalid argument.
ncclResult_t check_buffers(const std::string& call, const void* send, size_t send_bytes, const void* receive,
                           size_t receive_bytes) {
  if (send_bytes == 0) return ncclSuccess;
  if (!is_device_range(send, send_bytes))
    return error(ncclInvalidArgument, call + ": sendbuff is not device memory of " + std::to_string(send_bytes) + " bytes");
  if (!is_device_range(receive, receive_bytes))
    return error(ncclInvalidArgument,
                 call + ": recvbuff is not device memory of " + std::to_string(receive_bytes) + " bytes");
  return ncclSuccess;
}

// recvbuff's part for this rank gets sendbuff: in place when they are the same memory; a partial
// overlap is undefined in NCCL, so a misuse here.
void queue_copy(const std::string& call, const void* send, void* receive, size_t bytes, cudaStream_t stream) {
  if (bytes == 0 || send == receive) return;
  if (ranges_overlap(send, bytes, receive, bytes))
    fail(call + ": sendbuff and recvbuff overlap without the collective being in place");
  enqueue(stream, call, [=] { std::memcpy(receive, send, bytes); });
}

}  // namespace
}  // namespace cuda_emulator

using namespace cuda_emulator;

extern "C" const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    case ncclNumResults: break;
  }
  return "unknown result code";
}

extern "C" const char* ncclGetLastError(ncclComm_t) { return last_error.c_str(); }

extern "C" ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  if (uniqueId == nullptr) return error(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is null");
  std::memset(uniqueId->internal, 0, sizeof uniqueId->internal);
  std::memcpy(uniqueId->internal, kIdMark, sizeof kIdMark);
  return ncclSuccess;
}

extern "C" ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  if (comm == nullptr) return error(ncclInvalidArgument, "ncclCommInitRank: comm is null");
  if (std::memcmp(commId.internal, kIdMark, sizeof kIdMark) != 0)
    return error(ncclInvalidArgument, "ncclCommInitRank: commId was not made by ncclGetUniqueId");
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return error(ncclInvalidArgument,
                 "ncclCommInitRank: invalid rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  if (nranks != 1)
    return error(ncclInvalidUsage, "ncclCommInitRank: the CUDA emulator runs one rank, and " + std::to_string(nranks) +
                                       " ranks were asked for (launch one process, or use a real GPU)");
  *comm = new ncclComm;
  live_comms().add(*comm);
  return ncclSuccess;
}

extern "C" ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  if (comm == nullptr || asyncError == nullptr)
    return error(ncclInvalidArgument, "ncclCommGetAsyncError: comm or asyncError is null");
  live_comms().require(comm, "ncclCommGetAsyncError");
  *asyncError = ncclSuccess;  // one rank: no peer can fail
  return ncclSuccess;
}

// Abort and destroy both free the communicator; a null one is accepted, as NCCL does.
static ncclResult_t free_comm(ncclComm_t comm, const char* call) {
  if (comm == nullptr) return ncclSuccess;
  if (!live_comms().remove(comm))
    fail(std::string(call) + ": the communicator was never created or is already destroyed or aborted");
  delete comm;
  return ncclSuccess;
}

extern "C" ncclResult_t ncclCommAbort(ncclComm_t comm) { return free_comm(comm, "ncclCommAbort"); }
extern "C" ncclResult_t ncclCommDestroy(ncclComm_t comm) { return free_comm(comm, "ncclCommDestroy"); }

extern "C" ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                                      ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  const std::string call = "ncclAllReduce(count=" + std::to_string(count) + ")";
  ncclResult_t result = check_comm_and_type(call, comm, datatype);
  if (result != ncclSuccess) return result;
  if (op < ncclSum || op >= ncclNumOps) return error(ncclInvalidArgument, call + ": unknown op " + std::to_string(op));
  const size_t bytes = count * type_bytes(datatype);
  result = check_buffers(call, sendbuff, bytes, recvbuff, bytes);
  if (result != ncclSuccess) return result;
  queue_copy(call, sendbuff, recvbuff, bytes, stream);
  return ncclSuccess;
}

extern "C" ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                                      int root, ncclComm_t comm, cudaStream_t stream) {
  const std::string call = "ncclBroadcast(count=" + std::to_string(count) + ", root=" + std::to_string(root) + ")";
  ncclResult_t result = check_comm_and_type(call, comm, datatype);
  if (result != ncclSuccess) return result;
  if (root < 0 || root >= comm->nranks)
    return error(ncclInvalidArgument, call + ": root out of range for " + std::to_string(comm->nranks) + " rank(s)");
  const size_t bytes = count * type_bytes(datatype);
  result = check_buffers(call, sendbuff, bytes, recvbuff, bytes);
  if (result != ncclSuccess) return result;
  queue_copy(call, sendbuff, recvbuff, bytes, stream);
  return ncclSuccess;
}

extern "C" ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                                      ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream) {
  const std::string call = "ncclAllGather(sendcount=" + std::to_string(sendcount) + ")";
  ncclResult_t result = check_comm_and_type(call, comm, datatype);
  if (result != ncclSuccess) return result;
  const size_t bytes = sendcount * type_bytes(datatype);
  result = check_buffers(call, sendbuff, bytes, recvbuff, bytes * size_t(comm->nranks));
  if (result != ncclSuccess) return result;
  // This rank's block of recvbuff; in place when sendbuff is that block.
  void* block = static_cast<char*>(recvbuff) + size_t(comm->rank) * bytes;
  queue_copy(call, sendbuff, block, bytes, stream);
  return ncclSuccess;
}
