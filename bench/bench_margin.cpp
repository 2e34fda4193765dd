// The margin head, N = 512 rows, D = 512, ArcFace: one training step (forward + backward) of
//   fused    MarginHead: normalise, GEMM, the fused margin-softmax-CE-gradient kernel, two GEMMs,
//   unfused  the same step with the loss done as a chain of single-purpose passes and four extra
//            [N, C] buffers (kernels/margin_unfused.h), as a framework composes it,
// and the loss kernels alone on a ready [N, C] cosine matrix (fused_loss / unfused_loss).
// CPU at C = 10k and 100k; GPU (when present) at C = 10k, 100k, 200k in fp32 and with bf16 GEMM operands.
// Counter extra_MB: memory the step adds at its peak over what exists before it (x, labels, W and
// its gradient): on the GPU the caching allocator's high-water mark, on the CPU the process's peak
// resident memory (big buffers are mmap-ed, so freed memory leaves the resident set). On the CPU the
// "CPU" column is the process CPU time of all threads per step, a fairer comparison than the wall
// time on a machine that other work shares.
// bench/pytorch_margin.py measures InsightFace's PyTorch formulation the same way.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <fstream>
#include <functional>
#include <string>

#include "engine/allocator.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/l2norm.h"
#include "kernels/margin_unfused.h"
#include "kernels/random.h"
#include "layers/margin_head.h"

namespace cuface {
namespace {

constexpr int64_t kRows = 512, kDim = 512;

// VmRSS / VmHWM of this process, in bytes.
int64_t proc_status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  return 0;
}

using Step = std::function<void(Context&)>;

// Peak memory one call of `step` adds over what is live before it. The step runs on a fresh context:
// the timing context keeps its GPU workspace from step to step (the bf16 copies of f32 GEMM
// operands, 400 MB at C = 200k under bf16), which would otherwise count as live before the step,
// while PyTorch's autocast copies count in its peak. The caller's context must be idle (synchronised):
// the caching allocator reuses freed blocks assuming a single stream.
double extra_megabytes(Device device, Precision precision, const Step& step) {
  Context ctx(device);
  ctx.set_precision(precision);
  if (ctx.is_cuda()) {
    CudaCachingAllocator& allocator = CudaCachingAllocator::instance();
    const size_t before = allocator.stats().bytes_in_use;
    allocator.reset_peak();
    step(ctx);
    ctx.synchronize();
    return double(allocator.stats().peak_bytes_in_use - before) / 1e6;
  }
  // Blocks the host cache keeps stay resident: give them back so the step's own pages are counted.
  HostCachingAllocator::instance().release_cached();
  const int64_t before = proc_status_bytes("VmRSS");
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current resident size
  step(ctx);
  return double(proc_status_bytes("VmHWM") - before) / 1e6;
}

struct Problem {
  Tensor x, labels;
};
Problem make_problem(int64_t classes, Device device) {
  Context cpu(Device::CPU);
  Problem p;
  p.x = Tensor::empty({kRows, kDim});
  fill_normal(cpu, p.x, 1, 0);
  p.labels = Tensor::empty({kRows}, DType::I32);
  for (int64_t i = 0; i < kRows; ++i) p.labels.data<int32_t>()[i] = int32_t((i * 7919) % classes);
  p.x = p.x.to(device);
  p.labels = p.labels.to(device);
  return p;
}

// The step with the unfused loss chain: the same kernels as MarginHead except the loss.
void unfused_step(Context& ctx, MarginHead& head, const Problem& p) {
  Tensor& w = head.weight().value;
  const Device device = w.device();
  Tensor x_hat = Tensor::empty({kRows, kDim}, DType::F32, device), x_norms = Tensor::empty({kRows}, DType::F32, device);
  Tensor w_hat = Tensor::empty(w.shape(), DType::F32, device), w_norms = Tensor::empty({w.size(0)}, DType::F32, device);
  l2norm_forward(ctx, p.x, x_hat, x_norms);
  l2norm_forward(ctx, w, w_hat, w_norms);
  Tensor cos = Tensor::empty({kRows, w.size(0)}, DType::F32, device);
  gemm(ctx, false, true, 1.0f, x_hat, w_hat, 0.0f, cos);
  Tensor row_stats = Tensor::empty({kRows, kRowStatColumns}, DType::F32, device);
  margin_softmax_ce_unfused(ctx, cos, p.labels, head.options().margin, row_stats);
  Tensor dx = Tensor::empty({kRows, kDim}, DType::F32, device);
  gemm(ctx, false, false, 1.0f, cos, w_hat, 0.0f, dx);
  l2norm_backward(ctx, p.x, x_norms, dx, dx, false);
  gemm(ctx, true, false, 1.0f, cos, x_hat, 0.0f, w_hat);
  l2norm_backward(ctx, w, w_norms, w_hat, head.weight().grad, true);
}

enum class Variant { Fused, Unfused, FusedLoss, UnfusedLoss };

void run(benchmark::State& state, Device device, Precision precision, int64_t classes, Variant variant) {
  Context ctx(device);
  ctx.set_precision(precision);
  MarginHead head(classes, kDim);
  head.to(device);
  const Problem p = make_problem(classes, device);
  Step step;
  Tensor cos, cos_source, row_stats;
  switch (variant) {
    case Variant::Fused:
      step = [&](Context& c) {
        head.forward(c, p.x, p.labels);
        head.backward(c);
      };
      break;
    case Variant::Unfused:
      step = [&](Context& c) { unfused_step(c, head, p); };
      break;
    case Variant::FusedLoss:
    case Variant::UnfusedLoss:
      cos_source = head.forward(ctx, p.x);  // real cosines
      cos = Tensor::empty(cos_source.shape(), DType::F32, device);
      row_stats = Tensor::empty({kRows, kRowStatColumns}, DType::F32, device);
      step = [&, variant](Context& c) {
        copy(c, cos_source, cos);  // the loss overwrites its input; the copy is timed in both variants
        if (variant == Variant::FusedLoss) {
          margin_softmax_ce(c, cos, p.labels, head.options().margin, row_stats);
        } else {
          margin_softmax_ce_unfused(c, cos, p.labels, head.options().margin, row_stats);
        }
      };
      break;
  }
  step(ctx);  // warm-up: caches, cuBLAS heuristics, allocator blocks
  ctx.synchronize();
  state.counters["extra_MB"] = extra_megabytes(device, precision, step);
  for (auto _ : state) {
    step(ctx);
    ctx.synchronize();
  }
  state.counters["C"] = double(classes);
}

void register_all() {
  // Big buffers go straight to mmap and back, so the CPU peak-memory counter sees each step's own.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  const std::pair<Variant, const char*> variants[] = {{Variant::Fused, "fused_step"},
                                                      {Variant::Unfused, "unfused_step"},
                                                      {Variant::FusedLoss, "fused_loss"},
                                                      {Variant::UnfusedLoss, "unfused_loss"}};
  for (const int64_t classes : {10000, 100000})
    for (const auto& [variant, name] : variants) {
      const std::string label = std::string("margin/cpu/") + name + "/C:" + std::to_string(classes);
      benchmark::RegisterBenchmark(label.c_str(), run, Device::CPU, Precision::FP32, classes, variant)
          ->Unit(benchmark::kMillisecond)
          ->MeasureProcessCPUTime()  // CPU time of all threads: robust on a shared machine
          ->UseRealTime()
          ->MinTime(4.0);
    }
  if (cuda_device_count() == 0) return;
  for (const int64_t classes : {10000, 100000, 200000})
    for (const Precision precision : {Precision::FP32, Precision::BF16})
      for (const auto& [variant, name] : variants) {
        const std::string label = std::string("margin/cuda/") + precision_name(precision) + "/" + name +
                                  "/C:" + std::to_string(classes);
        benchmark::RegisterBenchmark(label.c_str(), run, Device::CUDA, precision, classes, variant)
            ->Unit(benchmark::kMillisecond);
      }
}

}  // namespace
}  // namespace cuface

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  cuface::register_all();
  if (cuface::cuda_device_count() == 0) std::printf("bench_margin: no CUDA device, GPU cases skipped\n");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
