// Whole-network speed: the face model (a torchvision ResNet V1 backbone, 512-d embedding, ArcFace head
// over 10,000 identities) as `cuface train FR` runs it, and as `cuface embed` runs it.
//
//   train_step: FaceModel::train_step (forward, ArcFace loss, backward of every layer) + the SGD
//               update of all parameters + zeroing the gradients: one training step, in images/s.
//   train_step_graph (GPU, bf16): the same step as `cuface train --cuda-graph auto` runs it, forward,
//               backward and update replayed from one CUDA graph (face/train/step_graph.h); its
//               ratio to train_step is what the graph saves.
//   embed:      FaceModel::embed in evaluation mode (no dropout, running BN statistics): embeddings/s.
//
// CPU: ResNet-50 at batch 8 (112 and 224 px) and 16 (112 px), ResNet-18 at batch 64 (112 px); CUDA:
// ResNet-50 at batch 256 in fp32 and bf16, registered only where a GPU exists. The data pipeline is left out (images are random and already normalised on the device):
// it runs on other threads during training (bench_loader measures it). bench/pytorch_resnet.py
// times the same network and step in PyTorch for the side-by-side ratio.
//
//   bench_resnet --benchmark_filter=cpu   # OMP_NUM_THREADS sets the CPU threads
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>

#include "engine/allocator.h"
#include "face/model/face_model.h"
#include "face/train/step_graph.h"
#include "face/train/optimizer.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"

namespace {

using namespace cuface;

constexpr int64_t kIdentities = 10000;

struct Setup {
  std::string arch;
  Device device;
  Precision precision;
  int64_t batch;
  int64_t size;
  std::string tag() const {
    return std::string(device == Device::CPU ? "cpu" : precision == Precision::BF16 ? "cuda_bf16" : "cuda_fp32") +
           "_b" + std::to_string(batch) + "_" + std::to_string(size) + "px";
  }
};

struct Network {
  std::unique_ptr<Context> ctx;
  std::unique_ptr<FaceModel> model;
  Tensor images, labels;
};

Network make_network(const Setup& setup) {
  Network n;
  n.ctx = std::make_unique<Context>(setup.device);
  if (setup.device == Device::CUDA) n.ctx->set_precision(setup.precision);
  FaceModelOptions options;
  options.arch = setup.arch;
  options.identities = kIdentities;
  options.seed = 1;
  n.model = std::make_unique<FaceModel>(options);
  n.model->to(setup.device);

  // Images as the uploader delivers them: normalised, NHWC, bf16 when training in bf16.
  Tensor values = Tensor::empty({setup.batch, setup.size, setup.size, 3}, DType::F32, setup.device);
  fill_uniform(*n.ctx, values, 7, 0, -1.0f, 1.0f);
  n.images = cast_to(*n.ctx, values, setup.precision == Precision::BF16 ? DType::BF16 : DType::F32);
  Tensor labels = Tensor::empty({setup.batch}, DType::I32);
  for (int64_t i = 0; i < setup.batch; ++i) labels.data<int32_t>()[i] = int32_t(i * 7919 % kIdentities);
  n.labels = labels.to(setup.device);
  return n;
}

void train_step(benchmark::State& state, Setup setup) {
  Network n = make_network(setup);
  SgdOptimizer optimizer(n.model->named_parameters(), 0.9, WeightDecay{});
  const std::vector<TaskLabels> tasks{{Task::FR, n.labels, 1.0f}};
  auto one_step = [&] {
    n.model->train_step(*n.ctx, n.images, tasks, true, false);
    optimizer.step(*n.ctx, 0.01);  // and zeroes the gradients
    n.ctx->synchronize();
  };
  one_step();  // warm-up: cuDNN algorithm search, allocator caching, first-touch of the weights
  for (auto _ : state) one_step();
  state.counters["img/s"] =
      benchmark::Counter(double(setup.batch) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void train_step_graph(benchmark::State& state, Setup setup) {
  Network n = make_network(setup);
  SgdOptimizer optimizer(n.model->named_parameters(), 0.9, WeightDecay{});
  const std::vector<TaskLabels> tasks{{Task::FR, n.labels, 1.0f}};
  StepGraph graph(*n.ctx, *n.model, optimizer);
  int64_t step = 0;
  auto one_step = [&] {
    graph.queue_step(*n.ctx, n.images, tasks, step++, 0.01);  // the update included
    n.ctx->synchronize();
  };
  one_step();  // eager: cuDNN algorithm search, allocator caching
  one_step();  // captures the step and runs it through the graph
  if (!graph.replaying()) {
    state.SkipWithError(("no CUDA graph: " + graph.failure()).c_str());
    return;
  }
  for (auto _ : state) one_step();
  state.counters["img/s"] =
      benchmark::Counter(double(setup.batch) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void embed(benchmark::State& state, Setup setup) {
  Network n = make_network(setup);
  n.model->set_training(false);
  n.model->embed(*n.ctx, n.images);
  n.ctx->synchronize();
  for (auto _ : state) {
    n.model->embed(*n.ctx, n.images);
    n.ctx->synchronize();
  }
  state.counters["img/s"] =
      benchmark::Counter(double(setup.batch) * double(state.iterations()), benchmark::Counter::kIsRate);
}

// Each run of a case builds ResNet-50 and a context anew, and Google Benchmark runs a case several
// times to find its iteration count, each for at least the minimum time; on a GPU, where the device
// check has a few minutes for every benchmark, the cases run once with fixed iterations instead.
void register_all(const Setup& setup) {
  auto configure = [&](benchmark::internal::Benchmark* b, int64_t gpu_iterations) {
    b->Unit(benchmark::kMillisecond)->UseRealTime();
    if (setup.device == Device::CPU)
      b->MinTime(2.0);
    else
      b->Iterations(gpu_iterations);
  };
  configure(benchmark::RegisterBenchmark((setup.arch + "_train_step/" + setup.tag()).c_str(), train_step, setup), 20);
  if (setup.device == Device::CUDA && setup.precision == Precision::BF16)
    configure(benchmark::RegisterBenchmark((setup.arch + "_train_step_graph/" + setup.tag()).c_str(), train_step_graph,
                                           setup),
              20);
  configure(benchmark::RegisterBenchmark((setup.arch + "_embed/" + setup.tag()).c_str(), embed, setup), 50);
}

}  // namespace

int main(int argc, char** argv) {
  for (int64_t size : {112, 224}) register_all({"resnet50", Device::CPU, Precision::FP32, 8, size});
  register_all({"resnet50", Device::CPU, Precision::FP32, 16, 112});
  register_all({"resnet18", Device::CPU, Precision::FP32, 64, 112});
  if (cuface::cuda_device_count() > 0) {
    for (int64_t size : {112, 224})
      for (Precision precision : {Precision::FP32, Precision::BF16})
        register_all({"resnet50", Device::CUDA, precision, 256, size});
  } else {
    std::printf("no CUDA device: the GPU cases (batch 256, fp32 and bf16) are not registered\n");
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
