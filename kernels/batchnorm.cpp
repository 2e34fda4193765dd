#include "kernels/batchnorm.h"

namespace cuface {

namespace {

void check_activations(const Tensor& x, const Tensor& y, const char* what) {
  CUFACE_CHECK(x.defined() && y.defined(), std::string(what) + ": activation tensors must be defined");
  CUFACE_CHECK(x.rank() >= 2 && x.size(-1) > 0,
               std::string(what) + ": expected [N, C] or [N, H, W, C] activations, got " + x.str());
  CUFACE_CHECK(x.shape() == y.shape() && x.dtype() == y.dtype() && x.device() == y.device(),
               std::string(what) + ": " + x.str() + " and " + y.str() + " differ in shape, dtype or device");
  CUFACE_CHECK(x.dtype() == DType::F32 || (x.dtype() == DType::BF16 && x.is_cuda()),
               std::string(what) + ": activations must be f32 (or bf16 on CUDA), got " + x.str());
}

void check_channels(const Tensor& t, const Tensor& x, bool required, const char* name, const char* what) {
  CUFACE_CHECK(t.defined() || !required, std::string(what) + ": " + name + " is required");
  if (!t.defined()) return;
  CUFACE_CHECK(t.dtype() == DType::F32 && t.numel() == x.size(-1) && t.device() == x.device(),
               std::string(what) + ": " + name + " must be f32 with " + std::to_string(x.size(-1)) +
                   " elements (one per channel) on " + device_name(x.device()) + ", got " + t.str());
}

}  // namespace

void check_batch_norm_forward(const Tensor& x, const Tensor& residual, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, const Tensor& y,
                              const Tensor& mean, const Tensor& invstd, const char* what) {
  check_activations(x, y, what);
  if (residual.defined()) check_activations(x, residual, what);
  check_channels(gamma, x, false, "gamma", what);
  check_channels(beta, x, false, "beta", what);
  check_channels(running_mean, x, true, "running_mean", what);
  check_channels(running_var, x, true, "running_var", what);
  check_channels(mean, x, true, "mean", what);
  check_channels(invstd, x, true, "invstd", what);
}

void check_batch_norm_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                               const Tensor& mean, const Tensor& invstd, bool relu, const Tensor& dx,
                               const Tensor& dresidual, const Tensor& dgamma, const Tensor& dbeta) {
  const char* what = "batch_norm_backward";
  check_activations(x, dy, what);
  check_activations(x, dx, what);
  if (dresidual.defined()) check_activations(x, dresidual, what);
  if (relu) check_activations(x, y, what);
  check_channels(gamma, x, false, "gamma", what);
  check_channels(mean, x, true, "mean", what);
  check_channels(invstd, x, true, "invstd", what);
  check_channels(dgamma, x, false, "dgamma", what);
  check_channels(dbeta, x, false, "dbeta", what);
}

}  // namespace cuface
