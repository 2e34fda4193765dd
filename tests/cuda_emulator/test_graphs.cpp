// Stream capture and graphs on the emulated device: a capture records without running, each launch
// runs the recording again on the memory as it is then, and the calls CUDA refuses during a capture
// invalidate it here too (so cuface's graph code is tested against CUDA's rules without a GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tests/cuda_emulator/kernels.h"

namespace {

using namespace emulator_test;

class EmulatorGraphs : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), cudaSuccess);
    for (float** buffer : {&x, &y, &z, &w}) ASSERT_EQ(cudaMalloc(buffer, n * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaHostAlloc(&pinned, n * sizeof(float), cudaHostAllocDefault), cudaSuccess);
    set_x(0.0f);
  }
  void TearDown() override {
    cudaDeviceSynchronize();
    for (float* buffer : {x, y, z, w}) cudaFree(buffer);
    cudaFreeHost(pinned);
    cudaStreamDestroy(stream);
    cudaStreamDestroy(side);
  }
  // x[i] = i + base.
  void set_x(float base) {
    std::vector<float> host(n);
    for (int i = 0; i < n; ++i) host[size_t(i)] = float(i) + base;
    ASSERT_EQ(cudaMemcpy(x, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> read(const float* device) {
    std::vector<float> host(n);
    EXPECT_EQ(cudaMemcpy(host.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  // Captures `body` on `stream`; returns cudaStreamEndCapture's status (graph set on success).
  cudaError_t capture(const std::function<void()>& body, cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) {
    EXPECT_EQ(cudaStreamBeginCapture(stream, mode), cudaSuccess);
    body();
    return cudaStreamEndCapture(stream, &graph);
  }

  static constexpr int n = 200;
  cudaStream_t stream = nullptr, side = nullptr;
  float *x = nullptr, *y = nullptr, *z = nullptr, *w = nullptr, *pinned = nullptr;
  cudaGraph_t graph = nullptr;
};

TEST_F(EmulatorGraphs, CaptureRecordsAndEachLaunchRunsOnTheMemoryAsItIsThen) {
  ASSERT_EQ(capture([&] {
              EXPECT_EQ(add_one(x, y, n, stream), cudaSuccess);
              EXPECT_EQ(add_one(y, z, n, stream), cudaSuccess);
            }),
            cudaSuccess);
  ASSERT_NE(graph, nullptr);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(std::isnan(read(z)[7])) << "the captured kernels ran during the capture";

  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (float base : {0.0f, 100.0f}) {
    set_x(base);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    // Ordered on its stream: a copy queued after the launch sees the graph's result.
    ASSERT_EQ(cudaMemcpyAsync(pinned, z, n * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (int i = 0; i < n; ++i) ASSERT_EQ(pinned[i], float(i) + base + 2.0f) << "launch with x = i + " << base;
  }
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
}

TEST_F(EmulatorGraphs, CallsCudaRefusesDuringACaptureInvalidateIt) {
  std::vector<float> pageable(n);
  const std::vector<std::pair<std::string, std::function<cudaError_t()>>> refused = {
      {"cudaMalloc", [&] { float* p = nullptr; return cudaMalloc(&p, 64); }},
      {"cudaStreamSynchronize", [&] { return cudaStreamSynchronize(stream); }},
      {"cudaDeviceSynchronize", [&] { return cudaDeviceSynchronize(); }},
      {"blocking cudaMemcpy",
       [&] { return cudaMemcpy(pageable.data(), w, n * sizeof(float), cudaMemcpyDeviceToHost); }},
      {"pageable cudaMemcpyAsync",
       [&] { return cudaMemcpyAsync(x, pageable.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream); }},
  };
  for (const auto& [name, call] : refused) {
    cudaError_t during = cudaSuccess;
    const cudaError_t ended = capture([&] {
      EXPECT_EQ(add_one(x, y, n, stream), cudaSuccess);
      during = call();
      cudaStreamCaptureStatus status;
      EXPECT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
      EXPECT_EQ(status, cudaStreamCaptureStatusInvalidated) << name;
    });
    EXPECT_EQ(during, cudaErrorStreamCaptureUnsupported) << name;
    EXPECT_EQ(ended, cudaErrorStreamCaptureInvalidated) << name;
    EXPECT_EQ(graph, nullptr) << name;
    cudaGetLastError();
  }
  // The stream captures no more after the failed capture; pinned memory may be copied in one.
  cudaStreamCaptureStatus status;
  ASSERT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);
  EXPECT_EQ(capture([&] {
              EXPECT_EQ(cudaMemcpyAsync(pinned, x, n * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
            }),
            cudaSuccess);
  cudaGraphDestroy(graph);
}

TEST_F(EmulatorGraphs, ARelaxedThreadMayAllocateDuringAThreadLocalCapture) {
  float* more = nullptr;
  ASSERT_EQ(capture(
                [&] {
                  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
                  EXPECT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);
                  EXPECT_EQ(cudaMalloc(&more, 64), cudaSuccess);
                  EXPECT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);
                  EXPECT_EQ(mode, cudaStreamCaptureModeRelaxed) << "the exchange gives the previous mode back";
                  EXPECT_EQ(add_one(x, y, n, stream), cudaSuccess);
                },
                cudaStreamCaptureModeThreadLocal),
            cudaSuccess);
  cudaGraphDestroy(graph);
  cudaFree(more);
}

TEST_F(EmulatorGraphs, AForkedStreamMustBeJoinedBack) {
  cudaEvent_t forked = nullptr, done = nullptr;
  ASSERT_EQ(cudaEventCreate(&forked), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&done), cudaSuccess);
  for (bool join : {true, false}) {
    const cudaError_t ended = capture([&] {
      EXPECT_EQ(add_one(x, y, n, stream), cudaSuccess);
      EXPECT_EQ(cudaEventRecord(forked, stream), cudaSuccess);
      EXPECT_EQ(cudaStreamWaitEvent(side, forked, 0), cudaSuccess);  // side joins the capture
      EXPECT_EQ(add_one(y, w, n, side), cudaSuccess);
      EXPECT_EQ(add_one(y, z, n, stream), cudaSuccess);
      if (join) {
        EXPECT_EQ(cudaEventRecord(done, side), cudaSuccess);
        EXPECT_EQ(cudaStreamWaitEvent(stream, done, 0), cudaSuccess);
      }
    });
    if (!join) {
      EXPECT_EQ(ended, cudaErrorStreamCaptureInvalidated) << "side's kernel was never joined back";
      continue;
    }
    ASSERT_EQ(ended, cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    set_x(10.0f);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(pinned, w, n * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_EQ(pinned[3], 3.0f + 10.0f + 2.0f) << "the launch's end waits for the side stream's work";
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  cudaEventDestroy(forked);
  cudaEventDestroy(done);
}

TEST_F(EmulatorGraphs, AnExternalEventRecordFiresAtItsPointOfEachLaunch) {
  cudaEvent_t halfway = nullptr;
  ASSERT_EQ(cudaEventCreate(&halfway), cudaSuccess);
  ASSERT_EQ(capture([&] {
              EXPECT_EQ(add_one(x, y, n, stream), cudaSuccess);
              EXPECT_EQ(cudaEventRecordWithFlags(halfway, stream, cudaEventRecordExternal), cudaSuccess);
              EXPECT_EQ(cudaMemcpyAsync(pinned, y, n * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
              EXPECT_EQ(add_one(y, z, n, stream), cudaSuccess);
            }),
            cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (float base : {0.0f, 50.0f}) {
    set_x(base);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    EXPECT_EQ(cudaEventQuery(halfway), cudaErrorNotReady) << "the launch's event is not reached yet";
    ASSERT_EQ(cudaEventSynchronize(halfway), cudaSuccess);
    EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady) << "the work after the event waited for nothing";
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_EQ(pinned[4], 4.0f + base + 1.0f);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaEventDestroy(halfway);
}

}  // namespace
