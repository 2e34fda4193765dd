// CUDA convolution: cuDNN's convolution API with NHWC tensors and OHWI (CUDNN_TENSOR_NHWC) filters.
// The CPU twin is kernels/cpu/conv.cpp.
//
// Per distinct problem (device, shapes, stride, padding, dtype, precision) a plan is built once and
// cached: the tensor, filter and convolution descriptors, and for each direction the fastest
// algorithm measured by cudnnFind*AlgorithmEx on the real tensors, within a workspace cap. Later calls
// only set the math type and launch, using the context's shared workspace.
//
// Math: bf16 data runs on tensor cores with f32 accumulation (cuDNN's PSEUDO_BFLOAT16 configuration).
// f32 data under Precision::FP32 is forced to CUDNN_FMA_MATH, which excludes TF32 (cuDNN's default
// math lets tensor cores round f32 inputs to TF32 on Ampere and later); under TF32 or BF16 precision
// f32 data uses the default math, i.e. TF32 where it is faster.
//
// Filter gradient with bf16 data: cuDNN computes dW in the data type (bf16, accumulated in f32 inside
// the kernel), so it is written to a bf16 scratch tensor and then added to the f32 gradient. This is
// what PyTorch autocast does (the bf16 weight copy's gradient is cast back to the f32 master). The
// one bf16 rounding of each step's dW (relative 2^-9, unbiased) is far below the noise of SGD; the
// sum over steps and micro-batches stays f32. The alternative, an f32 backward on f32 copies of x and
// dy, would double the memory traffic and lose the tensor cores.
//
// bf16 problems cuDNN has no algorithm for (its search fails, or every candidate does) run in f32
// instead: inputs cast up, the f32 problem solved, results cast down. Slower, but a model with an
// odd channel count (the stem's 3) still trains. CUFACE_CONV_BF16_IN_F32=1 sends every bf16
// convolution that way (to compare, or as a way out of a cuDNN fault).
#include <array>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/conv.h"
#include "kernels/elementwise.h"

namespace cuface::cuda {

namespace {

// The largest workspace an algorithm may use; the fastest one within it is chosen.
constexpr size_t kMaxWorkspaceBytes = size_t(256) << 20;

int to_int(int64_t value) {
  CUFACE_CHECK(value <= INT_MAX, "conv2d: size " + std::to_string(value) + " exceeds cuDNN's 32-bit sizes");
  return int(value);
}

cudnnDataType_t cudnn_type(DType dtype) { return dtype == DType::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }

struct ConvKey {
  int device;
  std::array<int64_t, 11> dims;  // N, H, W, C, O, KH, KW, stride h/w, pad h/w
  DType dtype;
  Precision precision;
  bool deterministic;
  bool operator<(const ConvKey& other) const {
    return std::tie(device, dims, dtype, precision, deterministic) <
           std::tie(other.device, other.dims, other.dtype, other.precision, other.deterministic);
  }
};

template <class Algo>
struct Choice {
  bool found = false;   // searched
  bool in_f32 = false;  // bf16 with no algorithm: solved as the f32 problem
  Algo algo{};
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool exact_fp32 = false;  // f32 data under Precision::FP32: no TF32
  bool deterministic = false;  // Context::deterministic: reproducible algorithms only
  // The math type every direction's search starts from. Each launch sets its own algorithm's math on
  // the shared descriptor, so a later search must reset it, or it inherits the previous direction's
  // choice (e.g. FMA) and never considers the tensor-core algorithms.
  cudnnMathType_t search_math = CUDNN_DEFAULT_MATH;
  std::string problem;      // "x [N, H, W, C] w [O, KH, KW, C] stride s pad p", for messages
  Choice<cudnnConvolutionFwdAlgo_t> forward;
  Choice<cudnnConvolutionBwdDataAlgo_t> backward_data;
  Choice<cudnnConvolutionBwdFilterAlgo_t> backward_filter;

  ConvPlan() = default;
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;
  ~ConvPlan() {  // destructors cannot throw: failures here are ignored
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

std::mutex plans_mutex;
std::map<ConvKey, std::unique_ptr<ConvPlan>>& plans() {
  static std::map<ConvKey, std::unique_ptr<ConvPlan>> cache;
  return cache;
}

// The plan for x [N, H, W, C], filter [O, KH, KW, C] and output y; the caller holds plans_mutex.
ConvPlan& plan_for(Context& ctx, const Shape& x, const Shape& w, const Shape& y, DType dtype, const Conv2dGeometry& g) {
  const ConvKey key{ctx.gpu_index(),
                    {x[0], x[1], x[2], x[3], w[0], w[1], w[2], g.stride_h, g.stride_w, g.pad_h, g.pad_w},
                    dtype,
                    ctx.precision(),
                    ctx.deterministic()};
  std::unique_ptr<ConvPlan>& slot = plans()[key];
  if (slot) return *slot;
  auto plan = std::make_unique<ConvPlan>();
  const cudnnDataType_t type = cudnn_type(dtype);
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x, CUDNN_TENSOR_NHWC, type, to_int(x[0]), to_int(x[3]), to_int(x[1]),
                                         to_int(x[2])));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y, CUDNN_TENSOR_NHWC, type, to_int(y[0]), to_int(y[3]), to_int(y[1]),
                                         to_int(y[2])));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan->w));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->w, type, CUDNN_TENSOR_NHWC, to_int(w[0]), to_int(w[3]), to_int(w[1]),
                                         to_int(w[2])));
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv));
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->conv, to_int(g.pad_h), to_int(g.pad_w), to_int(g.stride_h),
                                              to_int(g.stride_w), 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  plan->exact_fp32 = dtype == DType::F32 && ctx.precision() == Precision::FP32;
  plan->deterministic = ctx.deterministic();
  plan->problem = "x " + x.str() + " w " + w.str() + " stride " + std::to_string(g.stride_h) + " pad " +
                  std::to_string(g.pad_h);
  plan->search_math = dtype == DType::BF16 ? CUDNN_TENSOR_OP_MATH
                      : plan->exact_fp32   ? CUDNN_FMA_MATH
                                           : CUDNN_DEFAULT_MATH;
  slot = std::move(plan);
  return *slot;
}

// The fastest measured algorithm that succeeded within the workspace cap (and, under
// Context::deterministic, gives the same result every run). With exact fp32 the math is
// pinned to FMA whatever cuDNN reports, so no TF32 kernel can be chosen later. For bf16 data a failed
// search or no usable algorithm means "solve in f32"; for f32 it is an error.
template <class Algo, class Perf>
Choice<Algo> choose(cudnnStatus_t search, const std::vector<Perf>& results, int returned, const ConvPlan& plan,
                    DType dtype, const char* what) {
  if (search == CUDNN_STATUS_SUCCESS) {
    for (int i = 0; i < returned; ++i) {
      const Perf& r = results[size_t(i)];
      if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kMaxWorkspaceBytes) continue;
      if (plan.deterministic && r.determinism != CUDNN_DETERMINISTIC) continue;
      return Choice<Algo>{true, false, r.algo, plan.exact_fp32 ? CUDNN_FMA_MATH : r.mathType, r.memory};
    }
  }
  if (dtype == DType::BF16) {  // said once per problem: it is slower, and a benchmark should show why
    std::fprintf(stderr, "conv2d: cuDNN has no bf16 %s algorithm for %s (search: %s); solved in f32\n", what,
                 plan.problem.c_str(), cudnnGetErrorString(search));
    return Choice<Algo>{true, true};
  }
  if (search != CUDNN_STATUS_SUCCESS)
    throw Error(std::string("conv2d: cuDNN's ") + what + " algorithm search failed for " + plan.problem + ": " +
                cudnnGetErrorString(search));
  throw Error(std::string("conv2d: cuDNN found no ") + (plan.deterministic ? "deterministic " : "") + what +
              " algorithm for " + plan.problem + " within the workspace cap");
}

bool bf16_in_f32_forced() {
  const char* value = std::getenv("CUFACE_CONV_BF16_IN_F32");
  return value && std::string(value) == "1";
}

__global__ void accumulate_bf16_kernel(const bf16* source, float* target, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) target[i] += to_float(source[i]);
}

}  // namespace

void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, Tensor& y, const Conv2dGeometry& geometry) {
  std::unique_lock<std::mutex> lock(plans_mutex);
  ConvPlan& plan = plan_for(ctx, x.shape(), w.shape(), y.shape(), x.dtype(), geometry);
  cudnnHandle_t handle = ctx.cuda().cudnn;
  if (!plan.forward.found) {
    int count = 0, returned = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &count));
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.search_math));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> results(static_cast<size_t>(count));
    const cudnnStatus_t search = cudnnFindConvolutionForwardAlgorithmEx(
        handle, plan.x, x.raw(), plan.w, w.raw(), plan.conv, plan.y, y.raw(), count, &returned, results.data(),
        ctx.cuda().workspace_bytes(kMaxWorkspaceBytes), kMaxWorkspaceBytes);
    plan.forward = choose<cudnnConvolutionFwdAlgo_t>(search, results, returned, plan, x.dtype(), "forward");
  }
  if (x.dtype() == DType::BF16 && (plan.forward.in_f32 || bf16_in_f32_forced())) {
    lock.unlock();  // the f32 problem takes the lock itself
    Tensor y32 = Tensor::empty(y.shape(), DType::F32, Device::CUDA);
    cuda::conv2d_forward(ctx, cast_to(ctx, x, DType::F32), cast_to(ctx, w, DType::F32), y32, geometry);
    cuda::cast(ctx, y32, y);
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.forward.math));
  CUDNN_CHECK(cudnnConvolutionForward(handle, &alpha, plan.x, x.raw(), plan.w, w.raw(), plan.conv, plan.forward.algo,
                                      ctx.cuda().workspace_bytes(plan.forward.workspace), plan.forward.workspace, &beta,
                                      plan.y, y.raw()));
}

void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& geometry) {
  std::unique_lock<std::mutex> lock(plans_mutex);
  ConvPlan& plan = plan_for(ctx, dx.shape(), w.shape(), dy.shape(), dx.dtype(), geometry);
  cudnnHandle_t handle = ctx.cuda().cudnn;
  if (!plan.backward_data.found) {
    int count = 0, returned = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &count));
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.search_math));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> results(static_cast<size_t>(count));
    const cudnnStatus_t search = cudnnFindConvolutionBackwardDataAlgorithmEx(
        handle, plan.w, w.raw(), plan.y, dy.raw(), plan.conv, plan.x, dx.raw(), count, &returned, results.data(),
        ctx.cuda().workspace_bytes(kMaxWorkspaceBytes), kMaxWorkspaceBytes);
    plan.backward_data =
        choose<cudnnConvolutionBwdDataAlgo_t>(search, results, returned, plan, dx.dtype(), "backward-data");
  }
  if (dx.dtype() == DType::BF16 && (plan.backward_data.in_f32 || bf16_in_f32_forced())) {
    lock.unlock();
    Tensor dx32 = Tensor::empty(dx.shape(), DType::F32, Device::CUDA);
    cuda::conv2d_backward_data(ctx, cast_to(ctx, dy, DType::F32), cast_to(ctx, w, DType::F32), dx32, geometry);
    cuda::cast(ctx, dx32, dx);
    return;
  }
  const float alpha = 1.0f, beta = 0.0f;
  CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.backward_data.math));
  CUDNN_CHECK(cudnnConvolutionBackwardData(
      handle, &alpha, plan.w, w.raw(), plan.y, dy.raw(), plan.conv, plan.backward_data.algo,
      ctx.cuda().workspace_bytes(plan.backward_data.workspace), plan.backward_data.workspace, &beta, plan.x, dx.raw()));
}

void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                            const Conv2dGeometry& geometry) {
  std::unique_lock<std::mutex> lock(plans_mutex);
  ConvPlan& plan = plan_for(ctx, x.shape(), dw.shape(), dy.shape(), x.dtype(), geometry);
  cudnnHandle_t handle = ctx.cuda().cudnn;
  // bf16 data: dW in bf16 goes to a scratch tensor first (see the top of this file). The search also
  // writes its trial results there, never into the accumulated gradient.
  const bool via_scratch = x.dtype() == DType::BF16;
  Tensor scratch;
  if (via_scratch || !plan.backward_filter.found) scratch = Tensor::empty(dw.shape(), x.dtype(), Device::CUDA);
  if (!plan.backward_filter.found) {
    int count = 0, returned = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &count));
    CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.search_math));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> results(static_cast<size_t>(count));
    const cudnnStatus_t search = cudnnFindConvolutionBackwardFilterAlgorithmEx(
        handle, plan.x, x.raw(), plan.y, dy.raw(), plan.conv, plan.w, scratch.raw(), count, &returned, results.data(),
        ctx.cuda().workspace_bytes(kMaxWorkspaceBytes), kMaxWorkspaceBytes);
    plan.backward_filter =
        choose<cudnnConvolutionBwdFilterAlgo_t>(search, results, returned, plan, x.dtype(), "backward-filter");
  }
  if (via_scratch && (plan.backward_filter.in_f32 || bf16_in_f32_forced())) {
    lock.unlock();  // the f32 problem accumulates straight into the f32 dw
    cuda::conv2d_backward_filter(ctx, cast_to(ctx, x, DType::F32), cast_to(ctx, dy, DType::F32), dw, geometry);
    return;
  }
  const float alpha = 1.0f, beta = via_scratch ? 0.0f : 1.0f;  // f32: accumulate straight into dw
  void* target = via_scratch ? scratch.raw() : dw.raw();
  CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.backward_filter.math));
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &alpha, plan.x, x.raw(), plan.y, dy.raw(), plan.conv,
                                             plan.backward_filter.algo,
                                             ctx.cuda().workspace_bytes(plan.backward_filter.workspace),
                                             plan.backward_filter.workspace, &beta, plan.w, target));
  if (via_scratch) {
    const int64_t n = dw.numel();
    launch(accumulate_bf16_kernel, grid_for(n, 256), 256, 0, cuda_stream(ctx), scratch.data<bf16>(), dw.data<float>(),
           n);
  }
}

}  // namespace cuface::cuda
