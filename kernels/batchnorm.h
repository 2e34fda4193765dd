// Batch normalisation over every axis but the last (channel) axis: x is [N, H, W, C] (BatchNorm2d,
// statistics over N, H, W) or [N, C] (BatchNorm1d, statistics over N), seen as `rows` x C with the
// channels contiguous. With M = rows and, per channel c:
//
//   mean = sum_m x[m] / M,   var = sum_m (x[m] - mean)^2 / M    (biased: used to normalise)
//   invstd = 1 / sqrt(var + eps),   xhat = (x - mean) * invstd
//   y = gamma * xhat + beta [+ r]     (then max(y, 0) when `relu` is set: the fused BN + ReLU)
//
// r is an optional `residual` of x's shape: ResNet's block ends with relu(bn3(conv3) + shortcut), and
// adding the shortcut inside the normalising pass saves writing bn3's output and reading it back
// (4 activation passes instead of 6 for statistics, normalise, add and ReLU).
//
// Training forward uses the batch statistics and updates the running ones the PyTorch way:
//   running_mean = (1 - momentum) * running_mean + momentum * mean
//   running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased)
// PyTorch's momentum is TensorFlow's 1 - decay: TF "decay 0.997" is momentum 0.003 here.
// Evaluation forward uses mean = running_mean and var = running_var.
//
// Backward (g = dy, masked by y > 0 when relu is fused): with the statistics fixed by forward,
//   dbeta  = sum_m g[m]                 dgamma = sum_m g[m] * xhat[m]
// and for batch statistics, differentiating through mean and var (the compact formula),
//   dx = gamma * invstd / M * (M * g - dbeta - xhat * dgamma)
// while for running statistics (evaluation mode) mean and var are constants: dx = gamma * invstd * g.
// With a residual, dL/dr = g: when `dresidual` is wanted the CUDA statistics pass writes g there and
// the input-gradient pass reads it back instead of re-masking dy (7 passes instead of the unfused 8:
// mask dy, then BatchNorm backward's two); the CPU masks in a pass of its own first, which its
// vectoriser handles better than a store inside the reduction.
//
// Tensors: x, y, dy, dx (and residual, dresidual) are f32, or bf16 on CUDA (all the same dtype);
// gamma, beta, the running statistics, mean and invstd are f32 [C] on the same device. gamma and beta
// may be undefined (affine off: 1 and 0). Statistics are accumulated in double on the CPU and by a deterministic
// per-channel Welford reduction in fp32 on CUDA (no atomics: the same input gives the same bits).
//
// Fused ReLU backward needs to know where the output was clamped; it reads y (the post-ReLU output,
// which the next layer keeps anyway for its own backward), so no extra mask is stored.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

namespace cpu {
void batch_norm_forward_train(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                              const Tensor& beta, float eps, float momentum, bool relu, Tensor& running_mean,
                              Tensor& running_var, Tensor& num_batches_tracked, Tensor& y, Tensor& mean,
                              Tensor& invstd);
void batch_norm_forward_eval(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean, const Tensor& running_var, float eps,
                             bool relu, Tensor& y, Tensor& mean, Tensor& invstd);
void batch_norm_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                         const Tensor& mean, const Tensor& invstd, bool batch_stats, bool relu, Tensor& dx,
                         Tensor& dresidual, Tensor& dgamma, Tensor& dbeta);
void batch_norm_moments(Context& ctx, const Tensor& x, const Tensor& shift, Tensor& moments);
void batch_norm_stats_from_moments(Context& ctx, const Tensor& moments, int64_t count, float momentum,
                                   Tensor& running_mean, Tensor& running_var, Tensor& num_batches_tracked,
                                   Tensor& mean, Tensor& var);
void batch_norm_sync_input_grad(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                const Tensor& invstd, const Tensor& sums, int64_t count, Tensor& dx);
}  // namespace cpu

namespace cuda {
void batch_norm_forward_train(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                              const Tensor& beta, float eps, float momentum, bool relu, Tensor& running_mean,
                              Tensor& running_var, Tensor& num_batches_tracked, Tensor& y, Tensor& mean,
                              Tensor& invstd);
void batch_norm_forward_eval(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean, const Tensor& running_var, float eps,
                             bool relu, Tensor& y, Tensor& mean, Tensor& invstd);
void batch_norm_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                         const Tensor& mean, const Tensor& invstd, bool batch_stats, bool relu, Tensor& dx,
                         Tensor& dresidual, Tensor& dgamma, Tensor& dbeta);
void batch_norm_moments(Context& ctx, const Tensor& x, const Tensor& shift, Tensor& moments);
void batch_norm_stats_from_moments(Context& ctx, const Tensor& moments, int64_t count, float momentum,
                                   Tensor& running_mean, Tensor& running_var, Tensor& num_batches_tracked,
                                   Tensor& mean, Tensor& var);
void batch_norm_sync_input_grad(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                const Tensor& invstd, const Tensor& sums, int64_t count, Tensor& dx);
}  // namespace cuda

// Argument checks shared by both backends (throw with a message naming `what`): activations have the
// same shape, dtype and device, rank 2 to 4, f32 (or bf16 on CUDA); each per-channel tensor is f32
// with C elements on the same device (residual, dresidual, gamma, beta, dgamma, dbeta, and y without
// relu may be undefined).
void check_batch_norm_forward(const Tensor& x, const Tensor& residual, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, const Tensor& y,
                              const Tensor& mean, const Tensor& invstd, const char* what);
void check_batch_norm_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                               const Tensor& mean, const Tensor& invstd, bool relu, const Tensor& dx,
                               const Tensor& dresidual, const Tensor& dgamma, const Tensor& dbeta);

// Training forward. Writes y (with `residual` added before the ReLU when it is defined) and the batch
// `mean` and `invstd` (saved for backward), updates running_mean and running_var, and adds 1 to
// num_batches_tracked (i32, one element) when it is defined. Needs more than one value per channel
// (M > 1), as PyTorch does.
inline void batch_norm_forward_train(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                                     const Tensor& beta, float eps, float momentum, bool relu, Tensor& running_mean,
                                     Tensor& running_var, Tensor& num_batches_tracked, Tensor& y, Tensor& mean,
                                     Tensor& invstd) {
  check_batch_norm_forward(x, residual, gamma, beta, running_mean, running_var, y, mean, invstd,
                           "batch_norm_forward_train");
  CUFACE_CHECK(x.numel() / x.size(-1) > 1,
               "batch_norm_forward_train: expected more than one value per channel, got " + x.str());
  CUFACE_CHECK(!num_batches_tracked.defined() ||
                   (num_batches_tracked.dtype() == DType::I32 && num_batches_tracked.numel() == 1 &&
                    num_batches_tracked.device() == x.device()),
               "batch_norm_forward_train: num_batches_tracked must be one i32 on the activations' device");
  CUFACE_DISPATCH(x,
                  cpu::batch_norm_forward_train(ctx, x, residual, gamma, beta, eps, momentum, relu, running_mean,
                                                running_var, num_batches_tracked, y, mean, invstd),
                  cuda::batch_norm_forward_train(ctx, x, residual, gamma, beta, eps, momentum, relu, running_mean,
                                                 running_var, num_batches_tracked, y, mean, invstd));
}

// Evaluation forward with the running statistics. Also writes the `mean` and `invstd` it used, so
// that backward can run in evaluation mode (batch_stats = false).
inline void batch_norm_forward_eval(Context& ctx, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                                    const Tensor& beta, const Tensor& running_mean, const Tensor& running_var,
                                    float eps, bool relu, Tensor& y, Tensor& mean, Tensor& invstd) {
  check_batch_norm_forward(x, residual, gamma, beta, running_mean, running_var, y, mean, invstd,
                           "batch_norm_forward_eval");
  CUFACE_DISPATCH(x,
                  cpu::batch_norm_forward_eval(ctx, x, residual, gamma, beta, running_mean, running_var, eps, relu, y,
                                               mean, invstd),
                  cuda::batch_norm_forward_eval(ctx, x, residual, gamma, beta, running_mean, running_var, eps, relu, y,
                                                mean, invstd));
}

// Backward. `mean` and `invstd` are what forward wrote; batch_stats says whether forward used batch
// statistics (training) or running ones (evaluation). y is needed only when relu is fused. dx and
// dresidual (the residual's gradient, when forward added one; undefined: not wanted) are
// overwritten and must not overlap dy; dgamma and dbeta ACCUMULATE (+=, as parameter gradients do in
// layers/layer.h) and may be undefined to skip them (frozen layer, fixed gamma, affine off).
inline void batch_norm_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                                const Tensor& mean, const Tensor& invstd, bool batch_stats, bool relu, Tensor& dx,
                                Tensor& dresidual, Tensor& dgamma, Tensor& dbeta) {
  check_batch_norm_backward(x, y, dy, gamma, mean, invstd, relu, dx, dresidual, dgamma, dbeta);
  CUFACE_DISPATCH(x,
                  cpu::batch_norm_backward(ctx, x, y, dy, gamma, mean, invstd, batch_stats, relu, dx, dresidual,
                                           dgamma, dbeta),
                  cuda::batch_norm_backward(ctx, x, y, dy, gamma, mean, invstd, batch_stats, relu, dx, dresidual,
                                            dgamma, dbeta));
}

// ---- synchronised BatchNorm (layers/batch_norm.h, --sync-bn): the statistics of a batch split over ranks
//
// Forward: each rank computes moments of its rows about a shift every rank shares (the running mean,
// identical on every rank because sync-BN updates it from the global statistics), the moments are
// summed over the ranks (Communicator::all_reduce), and the global mean and variance follow:
//   S1 = sum (x - shift),  S2 = sum (x - shift)^2  (over all M rows of all ranks)
//   mean = shift + S1 / M,  var = S2 / M - (S1 / M)^2
// Shifting by the running mean keeps the E[x^2] - mean^2 cancellation small once the running mean is
// near the batch mean (the first steps lose about log10(mean^2 / var) digits of fp32's seven).
// batch_norm_forward_eval then normalises with (mean, var) as its statistics.
// Backward: batch_norm_backward with batch_stats = false gives k * g (and g for a residual) and the
// local sums of g and
// g * xhat (its dbeta and dgamma); those are summed over the ranks, and batch_norm_sync_input_grad
// subtracts the terms that flow through the global statistics:
//   dx -= k * (sum g / M + xhat * sum g * xhat / M),   k = gamma * invstd

// moments [2, C] f32 = { sum (x - shift), sum (x - shift)^2 } over this tensor's rows; shift [C] f32.
inline void batch_norm_moments(Context& ctx, const Tensor& x, const Tensor& shift, Tensor& moments) {
  check_batch_norm_forward(x, Tensor(), Tensor(), Tensor(), shift, shift, x, shift, shift, "batch_norm_moments");
  check_shape(moments, Shape{2, x.size(-1)}, "batch_norm_moments");
  check_same_device(x, moments, "batch_norm_moments");
  CUFACE_DISPATCH(x, cpu::batch_norm_moments(ctx, x, shift, moments), cuda::batch_norm_moments(ctx, x, shift, moments));
}

// From moments summed over `count` rows (all ranks) about shift = running_mean: mean and biased var
// [C], and the running statistics updated as batch_norm_forward_train does (num_batches_tracked + 1).
inline void batch_norm_stats_from_moments(Context& ctx, const Tensor& moments, int64_t count, float momentum,
                                          Tensor& running_mean, Tensor& running_var, Tensor& num_batches_tracked,
                                          Tensor& mean, Tensor& var) {
  CUFACE_CHECK(count > 1, "batch_norm_stats_from_moments: expected more than one value per channel");
  const int64_t channels = running_mean.numel();
  check_shape(moments, Shape{2, channels}, "batch_norm_stats_from_moments");
  for (const Tensor* t : {&running_var, &mean, &var}) check_shape(*t, Shape{channels}, "batch_norm_stats_from_moments");
  CUFACE_DISPATCH(moments,
                  cpu::batch_norm_stats_from_moments(ctx, moments, count, momentum, running_mean, running_var,
                                                     num_batches_tracked, mean, var),
                  cuda::batch_norm_stats_from_moments(ctx, moments, count, momentum, running_mean, running_var,
                                                      num_batches_tracked, mean, var));
}

// dx -= k * (sums[0] / count + xhat * sums[1] / count) in place: sums [2, C] = { sum g, sum g * xhat }
// over all `count` rows of all ranks (g masked by the fused ReLU, as batch_norm_backward computes it).
inline void batch_norm_sync_input_grad(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                       const Tensor& invstd, const Tensor& sums, int64_t count, Tensor& dx) {
  check_batch_norm_backward(x, Tensor(), dx, gamma, mean, invstd, false, dx, Tensor(), Tensor(), Tensor());
  check_shape(sums, Shape{2, x.size(-1)}, "batch_norm_sync_input_grad");
  CUFACE_DISPATCH(x, cpu::batch_norm_sync_input_grad(ctx, x, gamma, mean, invstd, sums, count, dx),
                  cuda::batch_norm_sync_input_grad(ctx, x, gamma, mean, invstd, sums, count, dx));
}

}  // namespace cuface
