// Stand-ins for the cuDNN calls cuface makes (the legacy convolution API), written from the cuDNN
// documentation.
//
// Tensors are 4-d: x [N, C, H, W], y [N, K, OH, OW], filter [K, C, R, S], each laid out as its
// descriptor's format says (NCHW, or NHWC = channels innermost; an NHWC filter is [K, R, S, C],
// "KRSC"). With padding p, stride u and dilation d (per axis):
//   OH = 1 + (H + 2 p - ((R - 1) d + 1)) / u
//   y[n, k, oh, ow] = sum_{c, r, s} x[n, c, oh u - p + r d, ow v - q + s e] * w[k, c, r', s']
// where taps outside the image read zero, r' = r for CUDNN_CROSS_CORRELATION and R - 1 - r for
// CUDNN_CONVOLUTION (the filter turned around). Backward data is the gradient of that sum with
// respect to x, backward filter with respect to w. Every call blends: out = alpha result + beta out,
// and with beta == 0 the old output is not read (it may hold NaN), as documented.
//
// Numbers: data FLOAT or BFLOAT16, compute type FLOAT (bf16 data is cuDNN's "pseudo bf16": read
// exactly, summed in f32, the result rounded to bf16 to nearest even). f32 data under
// CUDNN_DEFAULT_MATH or a tensor-op math type on sm_80 and later may run on TF32 tensor cores; the
// stand-in then rounds the f32 inputs to TF32, the worst case allowed. CUDNN_FMA_MATH is exact f32.
//
// Algorithms: the searches report three algorithms per direction as working, with made-up times
// that rank the one needing the largest workspace first (so a caller's workspace cap matters), the
// rest as CUDNN_STATUS_NOT_SUPPORTED. All compute the same sums; an algorithm with a workspace
// scribbles over it, so a workspace shared with live data shows. The searches overwrite their
// output tensor with NaN, as "arbitrary values" are documented.
#include <cudnn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "library_support.h"
#include "streams.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};

// A 4-d array [n, c, h, w] (for a filter: [k, c, r, s]) of one data type, with the element offset
// of a step along each axis.
struct Array4d {
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int n = 0, c = 0, h = 0, w = 0;
  int64_t stride_n = 0, stride_c = 0, stride_h = 0, stride_w = 0;

  int64_t offset(int i, int j, int y, int x) const { return i * stride_n + j * stride_c + y * stride_h + x * stride_w; }
  size_t element_bytes() const { return type == CUDNN_DATA_BFLOAT16 ? 2 : 4; }
  size_t extent_bytes() const { return size_t(offset(n - 1, c - 1, h - 1, w - 1) + 1) * element_bytes(); }
};

struct cudnnTensorStruct {
  bool set = false;
  Array4d array;
};

struct cudnnFilterStruct {
  bool set = false;
  Array4d array;
};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace cuda_emulator {
namespace {

LiveHandles<cudnnHandle_t>& live_handles() {
  static LiveHandles<cudnnHandle_t> handles;
  return handles;
}

// The array [n, c, h, w] stored in `format`, or the status cuDNN's Set*4dDescriptor returns.
cudnnStatus_t describe_4d(cudnnTensorFormat_t format, cudnnDataType_t type, int n, int c, int h, int w,
                          Array4d* array) {
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC && format != CUDNN_TENSOR_NCHW_VECT_C)
    return CUDNN_STATUS_BAD_PARAM;
  if (type < CUDNN_DATA_FLOAT || type > CUDNN_DATA_INT64) return CUDNN_STATUS_BAD_PARAM;
  if (int64_t(n) * c * h * w > (int64_t(1) << 31)) return CUDNN_STATUS_NOT_SUPPORTED;  // 2 Giga-elements
  if (format == CUDNN_TENSOR_NCHW_VECT_C) return CUDNN_STATUS_NOT_SUPPORTED;            // int8x4/x32 only
  array->type = type;
  array->n = n, array->c = c, array->h = h, array->w = w;
  if (format == CUDNN_TENSOR_NCHW) {
    array->stride_w = 1, array->stride_h = w, array->stride_c = int64_t(h) * w, array->stride_n = int64_t(c) * h * w;
  } else {  // channels innermost
    array->stride_c = 1, array->stride_w = c, array->stride_h = int64_t(w) * c, array->stride_n = int64_t(h) * w * c;
  }
  return CUDNN_STATUS_SUCCESS;
}

// The array as f32 in [n, h, w, c] order (channels innermost, contiguous), TF32-rounded on request.
std::vector<float> load_nhwc(const void* data, const Array4d& array, bool tf32) {
  std::vector<float> values(size_t(array.n) * array.h * array.w * array.c);
  size_t at = 0;
  for (int i = 0; i < array.n; ++i)
    for (int y = 0; y < array.h; ++y)
      for (int x = 0; x < array.w; ++x)
        for (int j = 0; j < array.c; ++j) {
          const int64_t offset = array.offset(i, j, y, x);
          const float value = array.type == CUDNN_DATA_BFLOAT16 ? bf16_to_float(static_cast<const uint16_t*>(data)[offset])
                                                              : static_cast<const float*>(data)[offset];
          values[at++] = tf32 ? round_to_tf32(value) : value;
        }
  return values;
}

// out = alpha result + beta out, result given in [n, h, w, c] order; with beta == 0 out is not read.
void store_nhwc(void* data, const Array4d& array, const std::vector<float>& result, float alpha, float beta) {
  size_t at = 0;
  for (int i = 0; i < array.n; ++i)
    for (int y = 0; y < array.h; ++y)
      for (int x = 0; x < array.w; ++x)
        for (int j = 0; j < array.c; ++j) {
          const int64_t offset = array.offset(i, j, y, x);
          const float value = alpha * result[at++];
          if (array.type == CUDNN_DATA_BFLOAT16) {
            uint16_t& target = static_cast<uint16_t*>(data)[offset];
            target = float_to_bf16(value + (beta == 0.0f ? 0.0f : beta * bf16_to_float(target)));
          } else {
            float& target = static_cast<float*>(data)[offset];
            target = value + (beta == 0.0f ? 0.0f : beta * target);
          }
        }
}

// One convolution problem, checked and copied out of the descriptors.
struct Problem {
  Array4d x, filter, y;
  int pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w;
  bool turned;  // CUDNN_CONVOLUTION: the filter is applied turned by 180 degrees
  bool tf32;    // f32 inputs rounded to TF32

  int taps() const { return filter.h * filter.w; }
  // The filter tap that tap (r, s) of the window multiplies.
  int filter_row(int r) const { return turned ? filter.h - 1 - r : r; }
  int filter_column(int s) const { return turned ? filter.w - 1 - s : s; }
  std::string text() const {
    return "x [" + std::to_string(x.n) + ", " + std::to_string(x.c) + ", " + std::to_string(x.h) + ", " +
           std::to_string(x.w) + "] w [" + std::to_string(filter.n) + ", " + std::to_string(filter.c) + ", " +
           std::to_string(filter.h) + ", " + std::to_string(filter.w) + "] (NCHW order)";
  }
};

int output_size(int input, int pad, int stride, int dilation, int taps) {
  const int span = (taps - 1) * dilation + 1;
  return input + 2 * pad < span ? 0 : 1 + (input + 2 * pad - span) / stride;
}

// Checks the descriptors of a convolution as cuDNN does; on success fills `problem`.
cudnnStatus_t check_problem(cudnnHandle_t handle, const cudnnTensorStruct* x_desc, const cudnnFilterStruct* w_desc,
                            const cudnnConvolutionStruct* conv, const cudnnTensorStruct* y_desc,
                            const std::string& call, Problem* problem) {
  if (handle == nullptr || x_desc == nullptr || w_desc == nullptr || conv == nullptr || y_desc == nullptr)
    return CUDNN_STATUS_BAD_PARAM;
  live_handles().require(handle, call);
  if (!x_desc->set || !w_desc->set || !conv->set || !y_desc->set) return CUDNN_STATUS_BAD_PARAM;
  const Array4d &x = x_desc->array, &w = w_desc->array, &y = y_desc->array;
  if (x.type != w.type || x.type != y.type) return CUDNN_STATUS_BAD_PARAM;
  if (x.c != w.c || x.n != y.n || y.c != w.n) return CUDNN_STATUS_BAD_PARAM;
  const int oh = output_size(x.h, conv->pad_h, conv->stride_h, conv->dilation_h, w.h);
  const int ow = output_size(x.w, conv->pad_w, conv->stride_w, conv->dilation_w, w.w);
  if (oh <= 0 || ow <= 0 || y.h != oh || y.w != ow) return CUDNN_STATUS_BAD_PARAM;
  if (x.type == CUDNN_DATA_HALF || x.type == CUDNN_DATA_DOUBLE)
    fail(call + ": " + (x.type == CUDNN_DATA_HALF ? "HALF" : "DOUBLE") +
         " convolutions are valid in cuDNN but not implemented by the emulator");
  if (x.type != CUDNN_DATA_FLOAT && x.type != CUDNN_DATA_BFLOAT16) return CUDNN_STATUS_NOT_SUPPORTED;
  // FLOAT data computes in FLOAT; so does BFLOAT16 data (PSEUDO_BFLOAT16_CONFIG, sm_80 and later).
  if (conv->compute != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (x.type == CUDNN_DATA_BFLOAT16 && profile().major < 8) return CUDNN_STATUS_ARCH_MISMATCH;
  const bool tensor_cores_allowed = conv->math != CUDNN_FMA_MATH && profile().major >= 8;
  *problem = Problem{x,
                     w,
                     y,
                     conv->pad_h,
                     conv->pad_w,
                     conv->stride_h,
                     conv->stride_w,
                     conv->dilation_h,
                     conv->dilation_w,
                     conv->mode == CUDNN_CONVOLUTION,
                     x.type == CUDNN_DATA_FLOAT && tensor_cores_allowed};
  return CUDNN_STATUS_SUCCESS;
}

// ---- the three sums, on f32 arrays in channels-innermost order ------------------------------------

// The filter [K, R, S, C] rearranged so that the inner loop of a direction runs over contiguous
// memory, with tap (r, s) holding the filter tap the window's (r, s) multiplies:
// [R, S, C, K] for forward, [R, S, K, C] for backward data.
std::vector<float> arrange_filter(const Problem& p, const std::vector<float>& krsc, bool channels_last) {
  const int K = p.filter.n, C = p.filter.c, R = p.filter.h, S = p.filter.w;
  std::vector<float> arranged(krsc.size());
  for (int k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s)
        for (int c = 0; c < C; ++c) {
          const float value = krsc[((size_t(k) * R + p.filter_row(r)) * S + p.filter_column(s)) * C + c];
          const size_t tap = size_t(r) * S + s;
          arranged[channels_last ? (tap * K + k) * C + c : (tap * C + c) * K + k] = value;
        }
  return arranged;
}

// y [N, OH, OW, K] from x [N, H, W, C] and the filter as [R, S, C, K].
std::vector<float> forward_sum(const Problem& p, const std::vector<float>& x, const std::vector<float>& rsck) {
  const int N = p.x.n, H = p.x.h, W = p.x.w, C = p.x.c, K = p.y.c, OH = p.y.h, OW = p.y.w;
  const int R = p.filter.h, S = p.filter.w;
  std::vector<float> y(size_t(N) * OH * OW * K, 0.0f);
  for (int n = 0; n < N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow) {
        float* out = &y[((size_t(n) * OH + oh) * OW + ow) * K];
        for (int r = 0; r < R; ++r) {
          const int ih = oh * p.stride_h - p.pad_h + r * p.dilation_h;
          if (ih < 0 || ih >= H) continue;
          for (int s = 0; s < S; ++s) {
            const int iw = ow * p.stride_w - p.pad_w + s * p.dilation_w;
            if (iw < 0 || iw >= W) continue;
            const float* in = &x[((size_t(n) * H + ih) * W + iw) * C];
            const float* taps = &rsck[(size_t(r) * S + s) * C * K];
            for (int c = 0; c < C; ++c) {
              const float value = in[c];
              const float* weights = taps + size_t(c) * K;
              for (int k = 0; k < K; ++k) out[k] += value * weights[k];
            }
          }
        }
      }
  return y;
}

// dx [N, H, W, C] from dy [N, OH, OW, K] and the filter as [R, S, K, C]: each input pixel gathers
// the output pixels whose windows cover it.
std::vector<float> backward_data_sum(const Problem& p, const std::vector<float>& dy, const std::vector<float>& rskc) {
  const int N = p.x.n, H = p.x.h, W = p.x.w, C = p.x.c, K = p.y.c, OH = p.y.h, OW = p.y.w;
  const int R = p.filter.h, S = p.filter.w;
  std::vector<float> dx(size_t(N) * H * W * C, 0.0f);
  for (int n = 0; n < N; ++n)
    for (int ih = 0; ih < H; ++ih)
      for (int iw = 0; iw < W; ++iw) {
        float* out = &dx[((size_t(n) * H + ih) * W + iw) * C];
        for (int r = 0; r < R; ++r) {
          const int row = ih + p.pad_h - r * p.dilation_h;  // oh * stride_h when the window covers ih
          if (row < 0 || row % p.stride_h != 0 || row / p.stride_h >= OH) continue;
          for (int s = 0; s < S; ++s) {
            const int column = iw + p.pad_w - s * p.dilation_w;
            if (column < 0 || column % p.stride_w != 0 || column / p.stride_w >= OW) continue;
            const float* gradient = &dy[((size_t(n) * OH + row / p.stride_h) * OW + column / p.stride_w) * K];
            const float* taps = &rskc[(size_t(r) * S + s) * K * C];
            for (int k = 0; k < K; ++k) {
              const float value = gradient[k];
              const float* weights = taps + size_t(k) * C;
              for (int c = 0; c < C; ++c) out[c] += value * weights[c];
            }
          }
        }
      }
  return dx;
}

// dw [K, R, S, C] (filter taps, turned back for CUDNN_CONVOLUTION) from x [N, H, W, C] and
// dy [N, OH, OW, K], summed as [R, S, C, K] so the inner loop runs over the output channels.
// A non-deterministic algorithm (cuDNN's atomics) is imitated: the output positions are summed in
// kChunks interleaved partial sums, which are then added in a random order, so two runs may differ in
// the last bits, as on a GPU.
constexpr int kChunks = 4;
std::vector<float> backward_filter_sum(const Problem& p, const std::vector<float>& x, const std::vector<float>& dy,
                                       bool deterministic) {
  const int N = p.x.n, H = p.x.h, W = p.x.w, C = p.x.c, K = p.y.c, OH = p.y.h, OW = p.y.w;
  const int R = p.filter.h, S = p.filter.w;
  const int chunks = deterministic ? 1 : kChunks;
  std::vector<std::vector<float>> partial(size_t(chunks), std::vector<float>(size_t(R) * S * C * K, 0.0f));
  int64_t position = 0;
  for (int n = 0; n < N; ++n)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow, ++position) {
        std::vector<float>& rsck = partial[size_t(position % chunks)];
        const float* gradient = &dy[((size_t(n) * OH + oh) * OW + ow) * K];
        for (int r = 0; r < R; ++r) {
          const int ih = oh * p.stride_h - p.pad_h + r * p.dilation_h;
          if (ih < 0 || ih >= H) continue;
          for (int s = 0; s < S; ++s) {
            const int iw = ow * p.stride_w - p.pad_w + s * p.dilation_w;
            if (iw < 0 || iw >= W) continue;
            const float* in = &x[((size_t(n) * H + ih) * W + iw) * C];
            float* sums = &rsck[(size_t(r) * S + s) * C * K];
            for (int c = 0; c < C; ++c) {
              const float value = in[c];
              float* out = sums + size_t(c) * K;
              for (int k = 0; k < K; ++k) out[k] += value * gradient[k];
            }
          }
        }
      }
  std::vector<int> order(static_cast<size_t>(chunks));
  std::iota(order.begin(), order.end(), 0);
  static std::atomic<uint32_t> calls{0};
  std::mt19937 rng(calls++);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<float> rsck = partial[size_t(order[0])];
  for (int i = 1; i < chunks; ++i)
    for (size_t e = 0; e < rsck.size(); ++e) rsck[e] += partial[size_t(order[size_t(i)])][e];
  std::vector<float> krsc(rsck.size());
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s)
      for (int c = 0; c < C; ++c)
        for (int k = 0; k < K; ++k)
          krsc[((size_t(k) * R + p.filter_row(r)) * S + p.filter_column(s)) * C + c] =
              rsck[((size_t(r) * S + s) * C + c) * K + k];
  return krsc;
}

// ---- algorithms ------------------------------------------------------------------------------------

enum class Direction { Forward, BackwardData, BackwardFilter };

// An algorithm the stand-in runs, its workspace and its made-up time.
struct Algorithm {
  int id;
  size_t workspace;
  float milliseconds;
  cudnnDeterminism_t determinism;
};

// The working algorithms of a direction, fastest first; every other id is NOT_SUPPORTED.
std::vector<Algorithm> algorithms(Direction direction, const Problem& p) {
  const size_t element = p.x.element_bytes();
  const size_t columns = size_t(p.y.n) * p.y.h * p.y.w * p.taps() * p.x.c * element;  // im2col of x
  const size_t filter = size_t(p.filter.n) * p.taps() * p.filter.c * sizeof(float);
  switch (direction) {
    case Direction::Forward:
      return {{CUDNN_CONVOLUTION_FWD_ALGO_GEMM, columns, 1.0f, CUDNN_DETERMINISTIC},
              {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, size_t(p.taps()) * sizeof(int), 2.0f,
               CUDNN_DETERMINISTIC},
              {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0, 3.0f, CUDNN_DETERMINISTIC}};
    case Direction::BackwardData:
      return {{CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, columns, 1.0f, CUDNN_DETERMINISTIC},
              {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, 0, 3.0f, CUDNN_NON_DETERMINISTIC}};
    case Direction::BackwardFilter:
      // The fastest is non-deterministic (as cuDNN's searches often find): --deterministic must skip it.
      return {{CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, filter, 0.5f, CUDNN_NON_DETERMINISTIC},
              {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, columns, 1.0f, CUDNN_DETERMINISTIC},
              {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, 0, 3.0f, CUDNN_NON_DETERMINISTIC}};
  }
  return {};
}

int algorithm_count(Direction direction) {
  switch (direction) {
    case Direction::Forward: return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case Direction::BackwardData: return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    case Direction::BackwardFilter: return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  }
  return 0;
}

const char* direction_name(Direction direction) {
  switch (direction) {
    case Direction::Forward: return "cudnnConvolutionForward";
    case Direction::BackwardData: return "cudnnConvolutionBackwardData";
    case Direction::BackwardFilter: return "cudnnConvolutionBackwardFilter";
  }
  return "";
}

// "cudnnFindConvolutionForwardAlgorithmEx" for Direction::Forward, and so on.
std::string search_name(Direction direction) {
  const std::string run = direction_name(direction);  // "cudnnConvolution..."
  return "cudnnFind" + run.substr(std::string("cudnn").size()) + "AlgorithmEx";
}

// The device arrays of one call: the two inputs and the output, in the order of the direction's
// formula (forward: x, w -> y; backward data: dy, w -> dx; backward filter: x, dy -> dw).
struct Arrays {
  const void* first;
  const void* second;
  void* output;
};

struct Extents {
  size_t first, second, output;
};

Extents extents(Direction direction, const Problem& p) {
  switch (direction) {
    case Direction::Forward: return {p.x.extent_bytes(), p.filter.extent_bytes(), p.y.extent_bytes()};
    case Direction::BackwardData: return {p.y.extent_bytes(), p.filter.extent_bytes(), p.x.extent_bytes()};
    case Direction::BackwardFilter: return {p.x.extent_bytes(), p.y.extent_bytes(), p.filter.extent_bytes()};
  }
  return {};
}

// Device-memory checks shared by the runs and the searches: inputs and output are device memory,
// the output overlaps neither input, and the workspace (its first `workspace_bytes`) overlaps none.
void check_memory(Direction direction, const Problem& p, const Arrays& arrays, const void* workspace,
                  size_t workspace_bytes, const std::string& call) {
  const Extents e = extents(direction, p);
  const char* names[3] = {"x", "w", "y"};
  if (direction == Direction::BackwardData) names[0] = "dy", names[1] = "w", names[2] = "dx";
  if (direction == Direction::BackwardFilter) names[0] = "x", names[1] = "dy", names[2] = "dw";
  require_device_memory(call, names[0], arrays.first, e.first);
  require_device_memory(call, names[1], arrays.second, e.second);
  require_device_memory(call, names[2], arrays.output, e.output);
  if (ranges_overlap(arrays.output, e.output, arrays.first, e.first) ||
      ranges_overlap(arrays.output, e.output, arrays.second, e.second))
    fail(call + ": the output " + names[2] + " overlaps an input; cuDNN convolutions are not in place");
  require_device_memory(call, "workSpace", workspace, workspace_bytes);
  if (ranges_overlap(workspace, workspace_bytes, arrays.first, e.first) ||
      ranges_overlap(workspace, workspace_bytes, arrays.second, e.second) ||
      ranges_overlap(workspace, workspace_bytes, arrays.output, e.output))
    fail(call + ": the workspace overlaps a tensor of the convolution");
}

// The direction's result, blended into the output.
void run(Direction direction, const Problem& p, const Arrays& a, float alpha, float beta, bool deterministic) {
  switch (direction) {
    case Direction::Forward: {
      const std::vector<float> y =
          forward_sum(p, load_nhwc(a.first, p.x, p.tf32), arrange_filter(p, load_nhwc(a.second, p.filter, p.tf32), false));
      store_nhwc(a.output, p.y, y, alpha, beta);
      return;
    }
    case Direction::BackwardData: {
      const std::vector<float> dx = backward_data_sum(p, load_nhwc(a.first, p.y, p.tf32),
                                                      arrange_filter(p, load_nhwc(a.second, p.filter, p.tf32), true));
      store_nhwc(a.output, p.x, dx, alpha, beta);
      return;
    }
    case Direction::BackwardFilter: {
      const std::vector<float> dw =
          backward_filter_sum(p, load_nhwc(a.first, p.x, p.tf32), load_nhwc(a.second, p.y, p.tf32), deterministic);
      store_nhwc(a.output, p.filter, dw, alpha, beta);
      return;
    }
  }
}

// The shared body of cudnnConvolutionForward / BackwardData / BackwardFilter.
cudnnStatus_t convolve(Direction direction, cudnnHandle_t handle, const void* alpha, const cudnnTensorStruct* x,
                       const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv, const cudnnTensorStruct* y,
                       int algo, void* workspace, size_t workspace_bytes, const void* beta, const Arrays& arrays) {
  Problem p;
  const std::string name = direction_name(direction);
  if (const cudnnStatus_t status = check_problem(handle, x, w, conv, y, name, &p); status != CUDNN_STATUS_SUCCESS)
    return status;
  if (alpha == nullptr || beta == nullptr || arrays.first == nullptr || arrays.second == nullptr ||
      arrays.output == nullptr)
    return CUDNN_STATUS_BAD_PARAM;
  if (algo < 0 || algo >= algorithm_count(direction)) return CUDNN_STATUS_BAD_PARAM;
  const std::vector<Algorithm> working = algorithms(direction, p);
  const auto chosen = std::find_if(working.begin(), working.end(), [&](const Algorithm& a) { return a.id == algo; });
  if (chosen == working.end()) return CUDNN_STATUS_NOT_SUPPORTED;
  // A workspace smaller than the algorithm needs: the emulator's choice of status (BAD_PARAM).
  if (workspace_bytes < chosen->workspace) return CUDNN_STATUS_BAD_PARAM;
  if (chosen->workspace > 0 && workspace == nullptr) return CUDNN_STATUS_BAD_PARAM;

  const std::string call = name + "(algo " + std::to_string(algo) + ", " + p.text() + ")";
  require_host_scalar(call, "alpha", alpha);
  require_host_scalar(call, "beta", beta);
  check_memory(direction, p, arrays, workspace, chosen->workspace, call);
  const float alpha_value = *static_cast<const float*>(alpha), beta_value = *static_cast<const float*>(beta);
  const size_t scribbled = chosen->workspace;
  const bool deterministic = chosen->determinism == CUDNN_DETERMINISTIC;
  enqueue(handle->stream, call, [=] {
    if (scribbled > 0) std::memset(workspace, 0xff, scribbled);  // the algorithm's scratch: NaN bytes
    run(direction, p, arrays, alpha_value, beta_value, deterministic);
  });
  return CUDNN_STATUS_SUCCESS;
}

// The shared body of the three cudnnFind*AlgorithmEx searches.
template <class Perf, class AlgoEnum>
cudnnStatus_t search(Direction direction, cudnnHandle_t handle, const cudnnTensorStruct* x,
                     const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv, const cudnnTensorStruct* y,
                     const Arrays& arrays, int requested, int* returned, Perf* results, void* workspace,
                     size_t workspace_bytes) {
  Problem p;
  const std::string name = search_name(direction);
  if (const cudnnStatus_t status = check_problem(handle, x, w, conv, y, name, &p); status != CUDNN_STATUS_SUCCESS)
    return status;
  if (requested <= 0 || returned == nullptr || results == nullptr || arrays.first == nullptr ||
      arrays.second == nullptr || arrays.output == nullptr)
    return CUDNN_STATUS_BAD_PARAM;
  const std::string call = name + "(" + p.text() + ")";
  if (is_capturing(handle->stream)) {  // the search times its trial runs: it synchronises
    invalidate_capture(handle->stream, call + " during stream capture");
    return CUDNN_STATUS_NOT_SUPPORTED;
  }
  check_memory(direction, p, arrays, workspace, workspace_bytes, call);

  std::vector<Perf> ranked;
  size_t largest_used = 0;
  for (const Algorithm& a : algorithms(direction, p)) {  // fastest first
    Perf perf{};
    perf.algo = AlgoEnum(a.id);
    perf.memory = a.workspace;
    perf.determinism = a.determinism;
    perf.mathType = conv->math;
    if (a.workspace <= workspace_bytes) {
      perf.status = CUDNN_STATUS_SUCCESS;
      perf.time = a.milliseconds;
      largest_used = std::max(largest_used, a.workspace);
    } else {
      perf.status = CUDNN_STATUS_ALLOC_FAILED;  // documented: the workspace given is too small
      perf.time = -1.0f;
    }
    ranked.push_back(perf);
  }
  std::stable_partition(ranked.begin(), ranked.end(), [](const Perf& r) { return r.status == CUDNN_STATUS_SUCCESS; });
  for (int id = 0; id < algorithm_count(direction); ++id) {
    if (std::any_of(ranked.begin(), ranked.end(), [&](const Perf& r) { return int(r.algo) == id; })) continue;
    Perf perf{};
    perf.algo = AlgoEnum(id);
    perf.status = CUDNN_STATUS_NOT_SUPPORTED;
    perf.time = -1.0f;
    perf.mathType = conv->math;
    ranked.push_back(perf);
  }
  *returned = std::min(requested, int(ranked.size()));
  std::copy(ranked.begin(), ranked.begin() + *returned, results);

  // The trial runs leave arbitrary values in the output and the workspace.
  const size_t output_bytes = extents(direction, p).output;
  enqueue(handle->stream, call, [=] {
    std::memset(arrays.output, 0xff, output_bytes);
    if (largest_used > 0) std::memset(workspace, 0xff, largest_used);
  });
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace
}  // namespace cuda_emulator

using namespace cuda_emulator;

extern "C" size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

extern "C" const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_ALLOC_FAILED: return "CUDNN_STATUS_ALLOC_FAILED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_INVALID_VALUE: return "CUDNN_STATUS_INVALID_VALUE";
    case CUDNN_STATUS_ARCH_MISMATCH: return "CUDNN_STATUS_ARCH_MISMATCH";
    case CUDNN_STATUS_MAPPING_ERROR: return "CUDNN_STATUS_MAPPING_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_LICENSE_ERROR: return "CUDNN_STATUS_LICENSE_ERROR";
    case CUDNN_STATUS_RUNTIME_PREREQUISITE_MISSING: return "CUDNN_STATUS_RUNTIME_PREREQUISITE_MISSING";
    case CUDNN_STATUS_RUNTIME_IN_PROGRESS: return "CUDNN_STATUS_RUNTIME_IN_PROGRESS";
    case CUDNN_STATUS_RUNTIME_FP_OVERFLOW: return "CUDNN_STATUS_RUNTIME_FP_OVERFLOW";
    case CUDNN_STATUS_VERSION_MISMATCH: return "CUDNN_STATUS_VERSION_MISMATCH";
  }
  return "CUDNN_UNKNOWN_STATUS_FOUND";
}

extern "C" cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *handle = new cudnnContext;
  live_handles().add(*handle);
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
  if (!live_handles().remove(handle)) fail("cudnnDestroy: the handle was never created or is already destroyed");
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
  live_handles().require(handle, "cudnnSetStream");
  handle->stream = streamId;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* tensorDesc) {
  if (tensorDesc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *tensorDesc = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc, cudnnTensorFormat_t format,
                                                    cudnnDataType_t dataType, int n, int c, int h, int w) {
  if (tensorDesc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t status = describe_4d(format, dataType, n, c, h, w, &tensorDesc->array);
  tensorDesc->set = tensorDesc->set || status == CUDNN_STATUS_SUCCESS;
  return status;
}

extern "C" cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
  delete tensorDesc;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* filterDesc) {
  if (filterDesc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *filterDesc = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc, cudnnDataType_t dataType,
                                                    cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (filterDesc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t status = describe_4d(format, dataType, k, c, h, w, &filterDesc->array);
  filterDesc->set = filterDesc->set || status == CUDNN_STATUS_SUCCESS;
  return status;
}

extern "C" cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
  delete filterDesc;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* convDesc) {
  if (convDesc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *convDesc = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc, int pad_h, int pad_w,
                                                         int u, int v, int dilation_h, int dilation_w,
                                                         cudnnConvolutionMode_t mode, cudnnDataType_t computeType) {
  if (convDesc == nullptr || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_BAD_PARAM;
  if (computeType < CUDNN_DATA_FLOAT || computeType > CUDNN_DATA_INT64) return CUDNN_STATUS_BAD_PARAM;
  convDesc->set = true;
  convDesc->pad_h = pad_h, convDesc->pad_w = pad_w;
  convDesc->stride_h = u, convDesc->stride_w = v;
  convDesc->dilation_h = dilation_h, convDesc->dilation_w = dilation_w;
  convDesc->mode = mode;
  convDesc->compute = computeType;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc, cudnnMathType_t mathType) {
  if (convDesc == nullptr || mathType < CUDNN_DEFAULT_MATH || mathType > CUDNN_FMA_MATH) return CUDNN_STATUS_BAD_PARAM;
  convDesc->math = mathType;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
  delete convDesc;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t algorithm_max_count(cudnnHandle_t handle, int* count, Direction direction) {
  if (handle == nullptr || count == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *count = algorithm_count(direction);
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return algorithm_max_count(handle, count, Direction::Forward);
}
extern "C" cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return algorithm_max_count(handle, count, Direction::BackwardData);
}
extern "C" cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return algorithm_max_count(handle, count, Direction::BackwardFilter);
}

extern "C" cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void* x, const cudnnFilterDescriptor_t wDesc,
    const void* w, const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc, void* y,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionFwdAlgoPerf_t* perfResults, void* workSpace,
    size_t workSpaceSizeInBytes) {
  return search<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      Direction::Forward, handle, xDesc, wDesc, convDesc, yDesc, Arrays{x, w, y}, requestedAlgoCount,
      returnedAlgoCount, perfResults, workSpace, workSpaceSizeInBytes);
}

extern "C" cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const void* w, const cudnnTensorDescriptor_t dyDesc,
    const void* dy, const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc, void* dx,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdDataAlgoPerf_t* perfResults,
    void* workSpace, size_t workSpaceSizeInBytes) {
  return search<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      Direction::BackwardData, handle, dxDesc, wDesc, convDesc, dyDesc, Arrays{dy, w, dx}, requestedAlgoCount,
      returnedAlgoCount, perfResults, workSpace, workSpaceSizeInBytes);
}

extern "C" cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void* x, const cudnnTensorDescriptor_t dyDesc,
    const void* y, const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t dwDesc, void* dw,
    const int requestedAlgoCount, int* returnedAlgoCount, cudnnConvolutionBwdFilterAlgoPerf_t* perfResults,
    void* workSpace, size_t workSpaceSizeInBytes) {
  return search<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      Direction::BackwardFilter, handle, xDesc, dwDesc, convDesc, dyDesc, Arrays{x, y, dw}, requestedAlgoCount,
      returnedAlgoCount, perfResults, workSpace, workSpaceSizeInBytes);
}

extern "C" cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha,
                                                 const cudnnTensorDescriptor_t xDesc, const void* x,
                                                 const cudnnFilterDescriptor_t wDesc, const void* w,
                                                 const cudnnConvolutionDescriptor_t convDesc,
                                                 cudnnConvolutionFwdAlgo_t algo, void* workSpace,
                                                 size_t workSpaceSizeInBytes, const void* beta,
                                                 const cudnnTensorDescriptor_t yDesc, void* y) {
  return convolve(Direction::Forward, handle, alpha, xDesc, wDesc, convDesc, yDesc, algo, workSpace,
                  workSpaceSizeInBytes, beta, Arrays{x, w, y});
}

extern "C" cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                                      const cudnnFilterDescriptor_t wDesc, const void* w,
                                                      const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      cudnnConvolutionBwdDataAlgo_t algo, void* workSpace,
                                                      size_t workSpaceSizeInBytes, const void* beta,
                                                      const cudnnTensorDescriptor_t dxDesc, void* dx) {
  return convolve(Direction::BackwardData, handle, alpha, dxDesc, wDesc, convDesc, dyDesc, algo, workSpace,
                  workSpaceSizeInBytes, beta, Arrays{dy, w, dx});
}

extern "C" cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                                        const cudnnTensorDescriptor_t xDesc, const void* x,
                                                        const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                                        const cudnnConvolutionDescriptor_t convDesc,
                                                        cudnnConvolutionBwdFilterAlgo_t algo, void* workSpace,
                                                        size_t workSpaceSizeInBytes, const void* beta,
                                                        const cudnnFilterDescriptor_t dwDesc, void* dw) {
  return convolve(Direction::BackwardFilter, handle, alpha, xDesc, dwDesc, convDesc, dyDesc, algo, workSpace,
                  workSpaceSizeInBytes, beta, Arrays{x, dy, dw});
}
