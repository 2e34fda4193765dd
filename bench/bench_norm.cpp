// Batch norm, ReLU and dropout kernels at the shapes of ResNet-50 on 112 x 112 face crops (stem
// 56x56x64, a stage-1 block output 28x28x256, stage 3 7x7x1024; the embedding BatchNorm1d [N, 512] and
// the head's dropout over [N, 2048]). Batch 8 on the CPU, 256 on the GPU (f32 and bf16).
//
//   bench_norm                                  # every case; OMP_NUM_THREADS sets the CPU threads
//   bench_norm --benchmark_filter=cpu/bn_train  # one family
//
// Each case reports the time per call and the bytes it must move (activations read and written) as
// a rate, to compare with the memory bandwidth: these kernels are bandwidth-bound. bench/pytorch_norm.py
// times the same operations in PyTorch.
#include <benchmark/benchmark.h>

#include <functional>
#include <memory>
#include <string>

#include "engine/allocator.h"
#include "engine/context.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"

namespace cuface {
namespace {

struct Operands {
  Tensor x, y, dy, dx, g;                                                      // activations
  Tensor gamma, beta, running_mean, running_var, mean, invstd, dgamma, dbeta;  // per channel, f32
};

Operands make_operands(Context& ctx, const Shape& shape, DType dtype) {
  const Device device = ctx.device();
  const int64_t channels = shape[shape.rank - 1];
  Operands o;
  Tensor values = Tensor::empty(shape, DType::F32, device);
  fill_uniform(ctx, values, 1, 0, -1.0f, 2.0f);
  o.x = Tensor::empty(shape, dtype, device);
  o.dy = Tensor::empty(shape, dtype, device);
  cast(ctx, values, o.x);
  cast(ctx, values, o.dy);
  o.y = Tensor::empty(shape, dtype, device);
  o.dx = Tensor::empty(shape, dtype, device);
  o.g = Tensor::empty(shape, dtype, device);
  for (Tensor* t : {&o.gamma, &o.beta, &o.running_mean, &o.running_var, &o.mean, &o.invstd, &o.dgamma, &o.dbeta}) {
    *t = Tensor::empty({channels}, DType::F32, device);
    fill(ctx, *t, 1.0f);
  }
  // Realistic y, mean and invstd for the backward cases (the fused ReLU zeroes about half of y).
  Tensor none;
  batch_norm_forward_train(ctx, o.x, none, o.gamma, o.beta, 1e-5f, 0.1f, true, o.running_mean, o.running_var, none,
                           o.y, o.mean, o.invstd);
  ctx.synchronize();
  return o;
}

using Op = std::function<void(Context&, Operands&)>;

struct Case {
  const char* name;
  int activations_moved;  // activation-sized tensors read plus written per call
  Op op;
};

const Case kCases[] = {
    {"bn_train_forward", 3,  // x read twice (statistics, then normalise), y written
     [](Context& ctx, Operands& o) {
       Tensor none;
       batch_norm_forward_train(ctx, o.x, none, o.gamma, o.beta, 1e-5f, 0.1f, false, o.running_mean, o.running_var,
                                none, o.y, o.mean, o.invstd);
     }},
    {"bn_relu_train_forward", 3,
     [](Context& ctx, Operands& o) {
       Tensor none;
       batch_norm_forward_train(ctx, o.x, none, o.gamma, o.beta, 1e-5f, 0.1f, true, o.running_mean, o.running_var,
                                none, o.y, o.mean, o.invstd);
     }},
    {"bn_add_relu_train_forward", 4,  // the residual join fused in: the shortcut (here dy) read too
     [](Context& ctx, Operands& o) {
       Tensor none;
       batch_norm_forward_train(ctx, o.x, o.dy, o.gamma, o.beta, 1e-5f, 0.1f, true, o.running_mean, o.running_var,
                                none, o.y, o.mean, o.invstd);
     }},
    {"bn_eval_forward", 2,
     [](Context& ctx, Operands& o) {
       Tensor none;
       batch_norm_forward_eval(ctx, o.x, none, o.gamma, o.beta, o.running_mean, o.running_var, 1e-5f, false, o.y,
                               o.mean, o.invstd);
     }},
    {"bn_backward", 5,  // x, dy read twice (sums, then dx), dx written
     [](Context& ctx, Operands& o) {
       Tensor none;
       batch_norm_backward(ctx, o.x, o.y, o.dy, o.gamma, o.mean, o.invstd, true, false, o.dx, none, o.dgamma, o.dbeta);
     }},
    {"bn_relu_backward", 7,  // y read too, for the mask
     [](Context& ctx, Operands& o) {
       Tensor none;
       batch_norm_backward(ctx, o.x, o.y, o.dy, o.gamma, o.mean, o.invstd, true, true, o.dx, none, o.dgamma, o.dbeta);
     }},
    {"bn_add_relu_backward", 7,  // x, y, dy read, g written (the shortcut's gradient), then x, g read, dx written
     [](Context& ctx, Operands& o) {
       batch_norm_backward(ctx, o.x, o.y, o.dy, o.gamma, o.mean, o.invstd, true, true, o.dx, o.g, o.dgamma, o.dbeta);
     }},
    {"relu_forward", 2, [](Context& ctx, Operands& o) { relu_forward(ctx, o.x, o.y); }},
    {"relu_backward", 3, [](Context& ctx, Operands& o) { relu_backward(ctx, o.x, o.dy, o.dx); }},
    // The unfused join, for comparison with bn_add_relu_*: bn_train_forward + add_relu does what
    // bn_add_relu_train_forward does, relu_backward + bn_backward what bn_add_relu_backward does.
    {"add_relu", 3, [](Context& ctx, Operands& o) { add_relu(ctx, o.x, o.dy, o.y); }},
    {"dropout", 2, [](Context& ctx, Operands& o) { dropout(ctx, o.x, o.y, 0.4f, 7, 3); }},
};

// One context per device for the whole program (creating cuDNN and cuBLAS handles per case would
// cost more than the cases); main releases them before static destruction begins.
std::unique_ptr<Context> contexts[2];

Context& context_for(Device device) {
  std::unique_ptr<Context>& ctx = contexts[device == Device::CUDA ? 1 : 0];
  if (!ctx) ctx = std::make_unique<Context>(device);
  return *ctx;
}

void run(benchmark::State& state, Device device, Shape shape, DType dtype, const Case* c) {
  Context& ctx = context_for(device);
  Operands o = make_operands(ctx, shape, dtype);
  c->op(ctx, o);  // warm-up: workspace and caches
  ctx.synchronize();
  for (auto _ : state) {
    c->op(ctx, o);
    ctx.synchronize();
  }
  const double bytes = double(c->activations_moved) * double(shape.numel()) * double(dtype_size(dtype));
  state.SetBytesProcessed(int64_t(bytes * double(state.iterations())));
}

std::string shape_label(const Shape& shape) {
  std::string label;
  for (int i = 0; i < shape.rank; ++i) {
    if (i > 0) label += 'x';
    label += std::to_string(shape[i]);
  }
  return label;
}

void register_device(Device device, int64_t batch, DType dtype) {
  const Shape images[] = {{batch, 56, 56, 64}, {batch, 28, 28, 256}, {batch, 7, 7, 1024}};
  for (const Case& c : kCases) {
    const std::string family = c.name;
    std::vector<Shape> shapes(std::begin(images), std::end(images));
    if (family == "bn_train_forward" || family == "bn_backward") shapes.push_back({batch, 512});  // embedding BN1d
    if (family == "dropout") shapes = {{batch, 2048}, {batch, 28, 28, 256}};
    for (const Shape& shape : shapes) {
      const std::string name =
          std::string(device_name(device)) + "/" + family + "/" + dtype_name(dtype) + "/" + shape_label(shape);
      benchmark::RegisterBenchmark(name.c_str(), run, device, shape, dtype, &c)->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
}  // namespace cuface

int main(int argc, char** argv) {
  using namespace cuface;
  register_device(Device::CPU, 8, DType::F32);
  if (cuda_device_count() > 0) {
    register_device(Device::CUDA, 256, DType::F32);
    register_device(Device::CUDA, 256, DType::BF16);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (auto& ctx : contexts) ctx.reset();
  return 0;
}
