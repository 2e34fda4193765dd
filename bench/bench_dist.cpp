// Gradient averaging of data-parallel training: GradBuckets' mean all-reduce of ResNet-50's trained
// gradients (the FaceModel: backbone, embedding FC + BN, optionally the ArcFace head), per step.
// Run under the launcher to measure it: `mpirun -np 2 bench_dist` (alone it measures the single
// process communicator, where nothing travels). Every rank runs the same fixed number of iterations,
// since each one is a collective. Counters: payload MB (f32) and the algorithm bandwidth S / time.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>

#include "engine/communicator.h"
#include "engine/grad_buckets.h"
#include "face/model/face_model.h"

namespace cuface {
namespace {

Communicator& world() {
  static std::unique_ptr<Communicator> comm = make_communicator(Device::CPU);
  return *comm;
}

// The shapes GradBuckets averages for ResNet-50 with an ArcFace head of `classes` rows (0: no head).
std::vector<Shape> resnet50_gradients(int64_t classes) {
  FaceModelOptions options;
  options.arch = "resnet50";
  options.identities = classes;
  FaceModel model(options);
  std::vector<Shape> shapes;
  for (NamedParameter& np : model.named_parameters())
    if (np.parameter->trainable) shapes.push_back(np.parameter->value.shape());
  return shapes;
}

void BM_GradBucketsMean(benchmark::State& state) {
  const int64_t classes = state.range(0);
  Context ctx(Device::CPU);
  GradBuckets buckets(world(), resnet50_gradients(classes), Device::CPU);
  int64_t floats = 0;
  for (int b = 0; b < buckets.bucket_count(); ++b) floats += buckets.bucket(b).numel();
  for (auto _ : state) buckets.wait(ctx);  // starts every bucket, then waits: the trainer's step
  state.counters["ranks"] = world().world_size();
  state.counters["buckets"] = buckets.bucket_count();
  state.counters["MB"] = double(floats) * 4e-6;
  state.counters["algbw_GB"] =
      benchmark::Counter(double(floats) * 4e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GradBucketsMean)->Arg(0)->Arg(10572)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();

class QuietReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace
}  // namespace cuface

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  // Ranks other than 0 run silently (their collectives still must happen).
  if (cuface::world().rank() != 0) {
    cuface::QuietReporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return 0;
}
