// CUDA batch normalisation (the math is in kernels/batchnorm.h; the CPU twin is kernels/cpu/batchnorm.cpp).
//
// Training forward, three launches on the context's stream:
//   1. welford_partials: per (slab of rows, channel) count, mean and M2 = sum (x - mean)^2 by Welford's
//      update in fp32, merged over the block's rows with Chan's formula (no E[x^2] - mean^2
//      cancellation). The values are first shifted by the channel's first element x[0, c], so the
//      fp32 running mean stays near zero and rounds as finely as the spread of the data, however far
//      from zero the data sit;
//   2. forward_finalize: one thread per channel merges its slabs (in double), adds the shift back,
//      writes mean, invstd, the running statistics and scale = gamma * invstd, shift = beta - mean * scale;
//   3. scale_shift: y = x * scale + shift (+ residual) (and max(., 0)), element-wise.
// Backward: grad_partials (sum g and sum g * xhat per slab; g stored as the residual's gradient when
// one is wanted), grad_finalize (dgamma, dbeta and the dx coefficients per channel), then input_grad
// element-wise (reading the stored g instead of masking dy again). Scratch lives in the context workspace.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/batchnorm.h"
#include "kernels/cuda/channels.cuh"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

// Chan et al.'s merge of two Welford states (count, mean, M2).
template <class R>
__device__ inline void welford_merge(R& count, R& mean, R& m2, R other_count, R other_mean, R other_m2) {
  const R total = count + other_count;
  if (total == 0) return;
  const R delta = other_mean - mean;
  const R other_weight = other_count / total;
  mean += delta * other_weight;
  m2 += other_m2 + delta * delta * count * other_weight;
  count = total;
}

// partial: [3][slabs][C] = count, mean of x - x[0, c], M2 of each slab's rows.
template <class T>
__global__ void welford_partials_kernel(const T* x, int64_t rows, int channels, float* partial) {
  const int c = blockIdx.x * kReduceChannels + threadIdx.x;
  float count = 0, mean = 0, m2 = 0;
  if (c < channels) {
    const float origin = as_float(x[c]);
    for (int64_t row = blockIdx.y * int64_t(kReduceRows) + threadIdx.y; row < rows;
         row += int64_t(gridDim.y) * kReduceRows) {
      const float v = as_float(x[row * channels + c]) - origin;
      count += 1.0f;
      const float delta = v - mean;
      mean += delta / count;
      m2 += delta * (v - mean);
    }
  }
  CUFACE_SHARED(float[3][kReduceRows][kReduceChannels], shared);
  const int tx = threadIdx.x, ty = threadIdx.y;
  shared[0][ty][tx] = count;
  shared[1][ty][tx] = mean;
  shared[2][ty][tx] = m2;
  __syncthreads();
  for (int stride = kReduceRows / 2; stride > 0; stride /= 2) {
    if (ty < stride)
      welford_merge(shared[0][ty][tx], shared[1][ty][tx], shared[2][ty][tx], shared[0][ty + stride][tx],
                    shared[1][ty + stride][tx], shared[2][ty + stride][tx]);
    __syncthreads();
  }
  if (ty == 0 && c < channels) {
    const int64_t slab = blockIdx.y, slabs = gridDim.y;
    for (int k = 0; k < 3; ++k) partial[(k * slabs + slab) * channels + c] = shared[k][0][tx];
  }
}

// Channel c's (count, mean, m2) over every slab's partial statistics, in double.
__device__ inline void merge_slabs(const float* partial, int slabs, int channels, int c, double& count, double& mean,
                                   double& m2) {
  for (int s = 0; s < slabs; ++s)
    welford_merge<double>(count, mean, m2, partial[(0 * slabs + s) * int64_t(channels) + c],
                          partial[(1 * slabs + s) * int64_t(channels) + c],
                          partial[(2 * slabs + s) * int64_t(channels) + c]);
}

// scale = gamma * invstd, shift = beta - mean * scale (gamma, beta null: 1, 0).
__device__ inline void fold_affine(const float* gamma, const float* beta, int c, float mean, float invstd, float* scale,
                                   float* shift) {
  const float g = gamma ? gamma[c] : 1.0f;
  const float b = beta ? beta[c] : 0.0f;
  scale[c] = g * invstd;
  shift[c] = b - mean * scale[c];
}

template <class T>
__global__ void forward_finalize_kernel(const T* x, const float* partial, int slabs, int channels, float eps,
                                        float momentum, const float* gamma, const float* beta, float* running_mean,
                                        float* running_var, int32_t* num_batches_tracked, float* mean_out,
                                        float* invstd_out, float* scale, float* shift) {
  CUFACE_KERNEL_LOOP(c64, channels) {
    const int c = int(c64);
    double count = 0, mean = 0, m2 = 0;
    merge_slabs(partial, slabs, channels, c, count, mean, m2);
    mean += double(as_float(x[c]));  // the shift welford_partials took off
    const double var = m2 / count;
    const float invstd = float(1.0 / sqrt(var + double(eps)));
    mean_out[c] = float(mean);
    invstd_out[c] = invstd;
    running_mean[c] = float((1.0 - momentum) * running_mean[c] + momentum * mean);
    running_var[c] = float((1.0 - momentum) * running_var[c] + momentum * (m2 / (count - 1.0)));
    fold_affine(gamma, beta, c, float(mean), invstd, scale, shift);
  }
  if (num_batches_tracked && blockIdx.x == 0 && threadIdx.x == 0) *num_batches_tracked += 1;
}

__global__ void eval_coefficients_kernel(const float* running_mean, const float* running_var, int channels, float eps,
                                         const float* gamma, const float* beta, float* mean_out, float* invstd_out,
                                         float* scale, float* shift) {
  CUFACE_KERNEL_LOOP(c64, channels) {
    const int c = int(c64);
    const float invstd = float(1.0 / sqrt(double(running_var[c]) + double(eps)));
    mean_out[c] = running_mean[c];
    invstd_out[c] = invstd;
    fold_affine(gamma, beta, c, running_mean[c], invstd, scale, shift);
  }
}

// residual may be null. Under bf16 the sum is formed in fp32 and rounded once (the unfused chain
// rounds the BatchNorm output first).
template <class T>
__global__ void scale_shift_kernel(const T* x, const T* residual, const float* scale, const float* shift, bool relu,
                                   T* y, int64_t n, int channels) {
  for_each_element(n, channels, [&](int64_t i, int c) {
    float v = as_float(x[i]) * scale[c] + shift[c];
    if (residual) v += as_float(residual[i]);
    if (relu) v = relu_value(v);
    y[i] = from_float<T>(v);
  });
}

// The upstream gradient with the fused ReLU's mask applied (y == 0 where the ReLU clamped).
template <class T>
__device__ inline float masked_grad(const T* y, const T* dy, int64_t i, bool relu) {
  return (relu && !(as_float(y[i]) > 0.0f)) ? 0.0f : as_float(dy[i]);
}

// partial: [2][slabs][C] = sum g, sum g * xhat of each slab's rows; g also stored in `g_out` unless null.
template <class T>
__global__ void grad_partials_kernel(const T* x, const T* y, const T* dy, const float* mean, const float* invstd,
                                     bool relu, int64_t rows, int channels, float* partial, T* g_out) {
  const int c = blockIdx.x * kReduceChannels + threadIdx.x;
  float sums[2] = {0.0f, 0.0f};
  if (c < channels) {
    const float m = mean[c], is = invstd[c];
    for (int64_t row = blockIdx.y * int64_t(kReduceRows) + threadIdx.y; row < rows;
         row += int64_t(gridDim.y) * kReduceRows) {
      const int64_t i = row * channels + c;
      const float g = masked_grad(y, dy, i, relu);
      if (g_out) g_out[i] = from_float<T>(g);  // exact: g is dy or 0
      sums[0] += g;
      sums[1] += g * ((as_float(x[i]) - m) * is);
    }
  }
  sum_over_block_rows<2>(sums);
  if (threadIdx.y == 0 && c < channels) {
    const int64_t slab = blockIdx.y, slabs = gridDim.y;
    partial[slab * channels + c] = sums[0];
    partial[(slabs + slab) * channels + c] = sums[1];
  }
}

// dgamma += sum g * xhat, dbeta += sum g; dx coefficients k = gamma * invstd and, for batch
// statistics, the means of g and g * xhat.
__global__ void grad_finalize_kernel(const float* partial, int slabs, int channels, int64_t rows, const float* gamma,
                                     const float* invstd, bool batch_stats, float* dgamma, float* dbeta, float* k,
                                     float* mean_g, float* mean_gxhat) {
  CUFACE_KERNEL_LOOP(c64, channels) {
    const int c = int(c64);
    double sum_g = 0, sum_gxhat = 0;
    for (int s = 0; s < slabs; ++s) {
      sum_g += partial[int64_t(s) * channels + c];
      sum_gxhat += partial[(int64_t(slabs) + s) * channels + c];
    }
    if (dbeta) dbeta[c] += float(sum_g);
    if (dgamma) dgamma[c] += float(sum_gxhat);
    k[c] = (gamma ? gamma[c] : 1.0f) * invstd[c];
    mean_g[c] = batch_stats ? float(sum_g / double(rows)) : 0.0f;
    mean_gxhat[c] = batch_stats ? float(sum_gxhat / double(rows)) : 0.0f;
  }
}

template <class T>
__global__ void input_grad_kernel(const T* x, const T* y, const T* dy, const float* mean, const float* invstd,
                                  const float* k, const float* mean_g, const float* mean_gxhat, bool relu, T* dx,
                                  int64_t n, int channels) {
  for_each_element(n, channels, [&](int64_t i, int c) {
    const float g = masked_grad(y, dy, i, relu);
    const float xhat = (as_float(x[i]) - mean[c]) * invstd[c];
    dx[i] = from_float<T>(k[c] * (g - mean_g[c] - xhat * mean_gxhat[c]));
  });
}

const float* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}
float* mutable_or_null(Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

template <class T>
void launch_scale_shift(Context& ctx, const Tensor& x, const Tensor& residual, const float* scale, const float* shift,
                        bool relu, Tensor& y) {
  const int64_t n = x.numel();
  launch(scale_shift_kernel<T>, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), x.data<T>(),
         residual.defined() ? residual.data<T>() : nullptr, scale, shift, relu, y.data<T>(), n, int(x.size(-1)));
}

template <class T>
void forward_train(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma, const Tensor& beta,
                   float eps, float momentum, bool relu, Tensor& running_mean, Tensor& running_var,
                   Tensor& num_batches_tracked, Tensor& y, Tensor& mean, Tensor& invstd) {
  const int channels = int(x.size(-1));
  const int64_t rows = x.numel() / channels;
  const ChannelReduceGrid reduce = channel_reduce_grid(ctx, rows, channels);
  float* scratch = static_cast<float*>(
      ctx.cuda().workspace_bytes(sizeof(float) * (3 * size_t(reduce.slabs) + 2) * size_t(channels)));
  float* partial = scratch;
  float* scale = scratch + 3 * size_t(reduce.slabs) * channels;
  float* shift = scale + channels;
  cudaStream_t stream = cuda_stream(ctx);
  launch(welford_partials_kernel<T>, reduce.grid, reduce.block, 0, stream, x.data<T>(), rows, channels, partial);
  launch(forward_finalize_kernel<T>, grid_for(channels, kBlock), kBlock, 0, stream, x.data<T>(), partial, reduce.slabs,
         channels, eps, momentum, data_or_null(gamma), data_or_null(beta), running_mean.data<float>(),
         running_var.data<float>(), num_batches_tracked.defined() ? num_batches_tracked.data<int32_t>() : nullptr,
         mean.data<float>(), invstd.data<float>(), scale, shift);
  launch_scale_shift<T>(ctx, x, residual, scale, shift, relu, y);
}

template <class T>
void forward_eval(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, float eps, bool relu, Tensor& y,
                  Tensor& mean, Tensor& invstd) {
  const int channels = int(x.size(-1));
  float* scale = static_cast<float*>(ctx.cuda().workspace_bytes(sizeof(float) * 2 * size_t(channels)));
  float* shift = scale + channels;
  launch(eval_coefficients_kernel, grid_for(channels, kBlock), kBlock, 0, cuda_stream(ctx), running_mean.data<float>(),
         running_var.data<float>(), channels, eps, data_or_null(gamma), data_or_null(beta), mean.data<float>(),
         invstd.data<float>(), scale, shift);
  launch_scale_shift<T>(ctx, x, residual, scale, shift, relu, y);
}

template <class T>
void backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma, const Tensor& mean,
              const Tensor& invstd, bool batch_stats, bool relu, Tensor& dx, Tensor& dresidual, Tensor& dgamma,
              Tensor& dbeta) {
  const int channels = int(x.size(-1));
  const int64_t rows = x.numel() / channels, n = x.numel();
  const ChannelReduceGrid reduce = channel_reduce_grid(ctx, rows, channels);
  float* scratch = static_cast<float*>(
      ctx.cuda().workspace_bytes(sizeof(float) * (2 * size_t(reduce.slabs) + 3) * size_t(channels)));
  float* partial = scratch;
  float* k = scratch + 2 * size_t(reduce.slabs) * channels;
  float* mean_g = k + channels;
  float* mean_gxhat = mean_g + channels;
  const T* py = relu ? y.data<T>() : nullptr;
  T* g = dresidual.defined() ? dresidual.data<T>() : nullptr;
  cudaStream_t stream = cuda_stream(ctx);
  launch(grad_partials_kernel<T>, reduce.grid, reduce.block, 0, stream, x.data<T>(), py, dy.data<T>(),
         mean.data<float>(), invstd.data<float>(), relu, rows, channels, partial, g);
  launch(grad_finalize_kernel, grid_for(channels, kBlock), kBlock, 0, stream, partial, reduce.slabs, channels, rows,
         data_or_null(gamma), invstd.data<float>(), batch_stats, mutable_or_null(dgamma), mutable_or_null(dbeta), k,
         mean_g, mean_gxhat);
  // With g stored, the mask is already applied: read g in place of dy (and y).
  launch(input_grad_kernel<T>, grid_for(n, kBlock), kBlock, 0, stream, x.data<T>(), g ? nullptr : py,
         g ? g : dy.data<T>(), mean.data<float>(), invstd.data<float>(), k, mean_g, mean_gxhat, g ? false : relu,
         dx.data<T>(), n, channels);
}
}  // namespace

void batch_norm_forward_train(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                              const Tensor& beta, float eps, float momentum, bool relu, Tensor& running_mean,
                              Tensor& running_var, Tensor& num_batches_tracked, Tensor& y, Tensor& mean,
                              Tensor& invstd) {
  if (x.dtype() == DType::BF16)
    forward_train<bf16>(ctx, x, residual, gamma, beta, eps, momentum, relu, running_mean, running_var,
                        num_batches_tracked, y, mean, invstd);
  else
    forward_train<float>(ctx, x, residual, gamma, beta, eps, momentum, relu, running_mean, running_var,
                         num_batches_tracked, y, mean, invstd);
}

void batch_norm_forward_eval(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean, const Tensor& running_var, float eps,
                             bool relu, Tensor& y, Tensor& mean, Tensor& invstd) {
  if (x.dtype() == DType::BF16)
    forward_eval<bf16>(ctx, x, residual, gamma, beta, running_mean, running_var, eps, relu, y, mean, invstd);
  else
    forward_eval<float>(ctx, x, residual, gamma, beta, running_mean, running_var, eps, relu, y, mean, invstd);
}

void batch_norm_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                         const Tensor& mean, const Tensor& invstd, bool batch_stats, bool relu, Tensor& dx,
                         Tensor& dresidual, Tensor& dgamma, Tensor& dbeta) {
  if (x.dtype() == DType::BF16)
    backward<bf16>(ctx, x, y, dy, gamma, mean, invstd, batch_stats, relu, dx, dresidual, dgamma, dbeta);
  else
    backward<float>(ctx, x, y, dy, gamma, mean, invstd, batch_stats, relu, dx, dresidual, dgamma, dbeta);
}

// ---- synchronised BatchNorm ------------------------------------------------------------------------

namespace {

// Merges welford_partials' slabs and turns (count, mean, M2) into sums about `shift`:
// S1 = n (mean - shift), S2 = M2 + n (mean - shift)^2.
template <class T>
__global__ void moments_finalize_kernel(const T* x, const float* partial, int slabs, int channels, const float* shift,
                                        float* moments) {
  CUFACE_KERNEL_LOOP(c64, channels) {
    const int c = int(c64);
    double count = 0, mean = 0, m2 = 0;
    merge_slabs(partial, slabs, channels, c, count, mean, m2);
    const double offset = mean + double(as_float(x[c])) - double(shift[c]);
    moments[c] = float(count * offset);
    moments[channels + c] = float(m2 + count * offset * offset);
  }
}

template <class T>
void moments(Context& ctx, const Tensor& x, const Tensor& shift, Tensor& out) {
  const int channels = int(x.size(-1));
  const int64_t rows = x.numel() / channels;
  const ChannelReduceGrid reduce = channel_reduce_grid(ctx, rows, channels);
  float* partial =
      static_cast<float*>(ctx.cuda().workspace_bytes(sizeof(float) * 3 * size_t(reduce.slabs) * size_t(channels)));
  cudaStream_t stream = cuda_stream(ctx);
  launch(welford_partials_kernel<T>, reduce.grid, reduce.block, 0, stream, x.data<T>(), rows, channels, partial);
  launch(moments_finalize_kernel<T>, grid_for(channels, kBlock), kBlock, 0, stream, x.data<T>(), partial, reduce.slabs,
         channels, shift.data<float>(), out.data<float>());
}

__global__ void stats_from_moments_kernel(const float* moments, int channels, int64_t count, float momentum,
                                          float* running_mean, float* running_var, int32_t* num_batches_tracked,
                                          float* mean, float* var) {
  CUFACE_KERNEL_LOOP(c64, channels) {
    const int c = int(c64);
    const double offset = double(moments[c]) / double(count);
    // Clamped at 0 the way std::max(v, 0.0) does in the CPU twin: a NaN stays NaN (fmax would give 0).
    const double raw_var = double(moments[channels + c]) / double(count) - offset * offset;
    const double batch_var = raw_var < 0.0 ? 0.0 : raw_var;
    const double batch_mean = double(running_mean[c]) + offset;  // the shift was the running mean
    mean[c] = float(batch_mean);
    var[c] = float(batch_var);
    running_mean[c] = float((1.0 - momentum) * running_mean[c] + momentum * batch_mean);
    running_var[c] = float((1.0 - momentum) * running_var[c] + momentum * batch_var * double(count) / double(count - 1));
  }
  if (num_batches_tracked && blockIdx.x == 0 && threadIdx.x == 0) *num_batches_tracked += 1;
}

template <class T>
__global__ void sync_input_grad_kernel(const T* x, const float* gamma, const float* mean, const float* invstd,
                                       const float* sums, float inverse_count, T* dx, int64_t n, int channels) {
  for_each_element(n, channels, [&](int64_t i, int c) {
    const float k = (gamma ? gamma[c] : 1.0f) * invstd[c];
    const float mean_g = sums[c] * inverse_count;
    const float mean_gxhat = sums[channels + c] * inverse_count;
    const float xhat = (as_float(x[i]) - mean[c]) * invstd[c];
    dx[i] = from_float<T>(as_float(dx[i]) - k * (mean_g + xhat * mean_gxhat));
  });
}

}  // namespace

void batch_norm_moments(Context& ctx, const Tensor& x, const Tensor& shift, Tensor& out) {
  if (x.dtype() == DType::BF16)
    moments<bf16>(ctx, x, shift, out);
  else
    moments<float>(ctx, x, shift, out);
}

void batch_norm_stats_from_moments(Context& ctx, const Tensor& moments, int64_t count, float momentum,
                                   Tensor& running_mean, Tensor& running_var, Tensor& num_batches_tracked,
                                   Tensor& mean, Tensor& var) {
  const int channels = int(running_mean.numel());
  launch(stats_from_moments_kernel, grid_for(channels, kBlock), kBlock, 0, cuda_stream(ctx), moments.data<float>(),
         channels, count, momentum, running_mean.data<float>(), running_var.data<float>(),
         num_batches_tracked.defined() ? num_batches_tracked.data<int32_t>() : nullptr, mean.data<float>(),
         var.data<float>());
}

void batch_norm_sync_input_grad(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                const Tensor& invstd, const Tensor& sums, int64_t count, Tensor& dx) {
  const int64_t n = x.numel();
  const int channels = int(x.size(-1));
  const float inverse_count = float(1.0 / double(count));
  cudaStream_t stream = cuda_stream(ctx);
  if (x.dtype() == DType::BF16)
    launch(sync_input_grad_kernel<bf16>, grid_for(n, kBlock), kBlock, 0, stream, x.data<bf16>(), data_or_null(gamma),
           mean.data<float>(), invstd.data<float>(), sums.data<float>(), inverse_count, dx.data<bf16>(), n, channels);
  else
    launch(sync_input_grad_kernel<float>, grid_for(n, kBlock), kBlock, 0, stream, x.data<float>(), data_or_null(gamma),
           mean.data<float>(), invstd.data<float>(), sums.data<float>(), inverse_count, dx.data<float>(), n, channels);
}

}  // namespace cuface::cuda
