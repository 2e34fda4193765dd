// Convolution (and pooling, FC) layer speed on the shapes of torchvision's ResNet-50 at 112x112
// input: every distinct convolution, forward and backward (filter + data gradient), as ms per call
// and GFLOP/s (2 * N * OH * OW * O * KH * KW * C per direction; backward counts two, except for the
// stem, whose data gradient training skips: its input is the image). CPU at batch 8;
// CUDA at batch 256 in fp32 and bf16, registered only where a GPU exists. "resnet50_all_convs" runs
// each of the 53 convolutions of one network once, forward and backward: the convolution part of a
// training step. bench/pytorch_layers.py times the same shapes in PyTorch.
//
// The CPU also runs batch 32: its convolutions have the GEMM shapes of 224 px input at batch 8.
//
//   bench_layers --benchmark_filter=cpu_b8   # OMP_NUM_THREADS sets the CPU threads
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"
#include "layers/conv2d.h"
#include "layers/global_avg_pool.h"
#include "layers/linear.h"
#include "layers/max_pool2d.h"

namespace {

using namespace cuface;

struct ConvShape {
  std::string name;
  int64_t in, out, kernel, stride, padding, size;  // size: input height = width
  int count;                                       // how many ResNet-50 convolutions have this shape
  int64_t out_size() const { return (size + 2 * padding - kernel) / stride + 1; }
  bool is_stem() const { return in == 3; }  // its input is the image: training skips its data gradient
  int backward_products() const { return is_stem() ? 1 : 2; }
  double flops(int64_t batch) const {
    return 2.0 * double(batch * out_size() * out_size() * out) * double(kernel * kernel * in);
  }
};

// torchvision ResNet-50 (stride on the 3x3 of each stage's first block) at 112x112: the stem makes
// 56x56, the max pool 28x28, and stages 2-4 halve it to 14, 7 and 4.
const std::vector<ConvShape> kResNet50Convs = {
    {"stem_7x7_3_64_s2", 3, 64, 7, 2, 3, 112, 1},
    {"l1_1x1_64_64", 64, 64, 1, 1, 0, 28, 1},
    {"l1_3x3_64_64", 64, 64, 3, 1, 1, 28, 3},
    {"l1_1x1_64_256", 64, 256, 1, 1, 0, 28, 4},  // 3 expansions + the downsample
    {"l1_1x1_256_64", 256, 64, 1, 1, 0, 28, 2},
    {"l2_1x1_256_128", 256, 128, 1, 1, 0, 28, 1},
    {"l2_3x3_128_128_s2", 128, 128, 3, 2, 1, 28, 1},
    {"l2_1x1_128_512", 128, 512, 1, 1, 0, 14, 4},
    {"l2_1x1_256_512_s2", 256, 512, 1, 2, 0, 28, 1},
    {"l2_1x1_512_128", 512, 128, 1, 1, 0, 14, 3},
    {"l2_3x3_128_128", 128, 128, 3, 1, 1, 14, 3},
    {"l3_1x1_512_256", 512, 256, 1, 1, 0, 14, 1},
    {"l3_3x3_256_256_s2", 256, 256, 3, 2, 1, 14, 1},
    {"l3_1x1_256_1024", 256, 1024, 1, 1, 0, 7, 6},
    {"l3_1x1_512_1024_s2", 512, 1024, 1, 2, 0, 14, 1},
    {"l3_1x1_1024_256", 1024, 256, 1, 1, 0, 7, 5},
    {"l3_3x3_256_256", 256, 256, 3, 1, 1, 7, 5},
    {"l4_1x1_1024_512", 1024, 512, 1, 1, 0, 7, 1},
    {"l4_3x3_512_512_s2", 512, 512, 3, 2, 1, 7, 1},
    {"l4_1x1_512_2048", 512, 2048, 1, 1, 0, 4, 3},
    {"l4_1x1_1024_2048_s2", 1024, 2048, 1, 2, 0, 7, 1},
    {"l4_1x1_2048_512", 2048, 512, 1, 1, 0, 4, 2},
    {"l4_3x3_512_512", 512, 512, 3, 1, 1, 4, 2},
};

// Where and how one benchmark runs.
struct Setup {
  Device device;
  DType dtype;
  int64_t batch;
  std::string tag() const {
    return device == Device::CPU ? "cpu" : std::string("cuda_") + (dtype == DType::BF16 ? "bf16" : "fp32");
  }
};

Tensor random_activations(Context& ctx, const Shape& shape, const Setup& setup, uint64_t seed) {
  Tensor values = Tensor::empty(shape, DType::F32, setup.device);
  fill_uniform(ctx, values, seed, 0, -1.0f, 1.0f);
  return cast_to(ctx, values, setup.dtype);
}

std::unique_ptr<Context> make_context(const Setup& setup) {
  auto ctx = std::make_unique<Context>(setup.device);
  ctx->set_precision(setup.dtype == DType::BF16 ? Precision::BF16 : Precision::FP32);
  return ctx;
}

struct ConvBench {
  std::unique_ptr<Conv2d> conv;
  Tensor x, dy;
};

ConvBench make_conv(Context& ctx, const ConvShape& s, const Setup& setup) {
  ConvBench b;
  b.conv = std::make_unique<Conv2d>(s.in, s.out, s.kernel, s.stride, s.padding);
  b.conv->set_input_gradient(!s.is_stem());
  b.conv->to(setup.device);
  b.x = random_activations(ctx, {setup.batch, s.size, s.size, s.in}, setup, 1);
  b.dy = random_activations(ctx, {setup.batch, s.out_size(), s.out_size(), s.out}, setup, 2);
  // Warm-up outside the timings: cuDNN's algorithm search, the CPU column buffer.
  b.conv->forward(ctx, b.x);
  b.conv->backward(ctx, b.dy);
  ctx.synchronize();
  return b;
}

void report(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void conv_forward(benchmark::State& state, ConvShape s, Setup setup) {
  auto ctx = make_context(setup);
  ConvBench b = make_conv(*ctx, s, setup);
  for (auto _ : state) {
    Tensor y = b.conv->forward(*ctx, b.x);
    ctx->synchronize();
  }
  report(state, s.flops(setup.batch));
}

// Backward = filter gradient + data gradient, as one training step runs it (the stem's filter
// gradient only); the forward that saves x is outside the timed region.
void conv_backward(benchmark::State& state, ConvShape s, Setup setup) {
  auto ctx = make_context(setup);
  ConvBench b = make_conv(*ctx, s, setup);
  for (auto _ : state) {
    state.PauseTiming();
    b.conv->forward(*ctx, b.x);
    ctx->synchronize();
    state.ResumeTiming();
    Tensor dx = b.conv->backward(*ctx, b.dy);
    ctx->synchronize();
  }
  report(state, s.backward_products() * s.flops(setup.batch));
}

// Every convolution of the network once (each shape `count` times), forward then backward.
void all_convs(benchmark::State& state, Setup setup) {
  auto ctx = make_context(setup);
  std::vector<ConvBench> benches;
  double flops = 0;
  for (const ConvShape& s : kResNet50Convs) {
    benches.push_back(make_conv(*ctx, s, setup));
    flops += (1 + s.backward_products()) * s.flops(setup.batch) * s.count;
  }
  for (auto _ : state) {
    for (size_t i = 0; i < benches.size(); ++i)
      for (int c = 0; c < kResNet50Convs[i].count; ++c) {
        benches[i].conv->forward(*ctx, benches[i].x);
        benches[i].conv->backward(*ctx, benches[i].dy);
      }
    ctx->synchronize();
  }
  report(state, flops);
}

// The stem's max pool (56x56x64 -> 28x28) and the embedding FC (2048 -> 512), forward + backward.
void stem_pool(benchmark::State& state, Setup setup) {
  auto ctx = make_context(setup);
  MaxPool2d pool;
  const Tensor x = random_activations(*ctx, {setup.batch, 56, 56, 64}, setup, 3);
  const Tensor dy = random_activations(*ctx, {setup.batch, 28, 28, 64}, setup, 4);
  for (auto _ : state) {
    pool.forward(*ctx, x);
    pool.backward(*ctx, dy);
    ctx->synchronize();
  }
}

void embedding_fc(benchmark::State& state, Setup setup) {
  auto ctx = make_context(setup);
  GlobalAvgPool gap;
  Linear fc(2048, 512, true);
  fc.to(setup.device);
  const Tensor x = random_activations(*ctx, {setup.batch, 4, 4, 2048}, setup, 5);
  const Tensor dy = random_activations(*ctx, {setup.batch, 512}, setup, 6);
  for (auto _ : state) {
    fc.forward(*ctx, gap.forward(*ctx, x));
    gap.backward(*ctx, fc.backward(*ctx, dy));
    ctx->synchronize();
  }
  report(state, 3 * 2.0 * double(setup.batch) * 2048 * 512);
}

void register_all(const Setup& setup) {
  const std::string tag = setup.tag() + "_b" + std::to_string(setup.batch);
  for (const ConvShape& s : kResNet50Convs) {
    benchmark::RegisterBenchmark((tag + "/fwd/" + s.name).c_str(), conv_forward, s, setup)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((tag + "/bwd/" + s.name).c_str(), conv_backward, s, setup)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark((tag + "/resnet50_all_convs_fwd_bwd").c_str(), all_convs, setup)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark((tag + "/maxpool_3x3s2_fwd_bwd").c_str(), stem_pool, setup)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark((tag + "/gap_fc_2048_512_fwd_bwd").c_str(), embedding_fc, setup)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all({Device::CPU, DType::F32, 8});
  register_all({Device::CPU, DType::F32, 32});
  if (cuface::cuda_device_count() > 0) {
    register_all({Device::CUDA, DType::F32, 256});
    register_all({Device::CUDA, DType::BF16, 256});
  } else {
    std::printf("no CUDA device: the GPU cases (batch 256, fp32 and bf16) are not registered\n");
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
