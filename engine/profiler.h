// Per-layer-kind timing for `--profile` (cuface train, cuface embed): one row per kind of work (a
// layer type and its pass, the optimizer, the data wait) with its total time, share, calls and the
// rate it achieved, like PyTorch profiler's key_averages().
//
// Work is timed where it is queued: a ProfileScope around a layer's forward or backward records a
// start and a stop on the context's stream, CUDA events on the GPU (so the time is the GPU's, not the
// host's queueing) and the steady clock on the CPU, whose kernels finish before they return. GPU
// events are read back by collect(), which waits for the stream: the trainer calls it once per step
// while profiling, the one synchronisation profiling adds.
//
// Rates: a scope given floating-point operations reports GFLOP/s (convolutions and GEMMs), one given
// bytes reports GB/s (element-wise and normalisation passes: the bytes of the tensors passed in and
// out, a lower bound on the traffic).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/context.h"

namespace cuface {

enum class Pass : uint8_t { Forward, Backward, Step };  // Step: once per step (optimizer, data wait, ...)
const char* pass_name(Pass pass);

struct ProfileWork {
  double flops = 0;  // floating-point operations of the call
  double bytes = 0;  // bytes of its input and output tensors
};

class Profiler {
 public:
  Profiler() = default;
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  struct Row {
    std::string kind;
    Pass pass;
    double seconds = 0;
    int64_t calls = 0;
    ProfileWork work;
  };

  // One call of `kind` from `start` (a mark from start()) to now, on ctx's stream.
  struct Mark {
    size_t event = 0;                // CUDA: index of the start event in the pool
    double cpu_seconds = 0;          // CPU: the clock at the start
  };
  Mark start(Context& ctx);
  void stop(Context& ctx, const Mark& mark, const char* kind, Pass pass, const ProfileWork& work);

  // Folds every finished GPU call into the totals (waits for ctx's stream; nothing to do on the CPU).
  void collect(Context& ctx);
  // The totals so far, the longest first (collects first).
  std::vector<Row> rows(Context& ctx);
  // A table of rows(): kind, pass, total ms, share of `wall_seconds` (0: of the profiled time), calls,
  // ms per call, rate; with wall_seconds, a last row holds the time outside every scope (the host's
  // own work, waits).
  std::string table(Context& ctx, double wall_seconds, const std::string& title);
  // The same rows as CSV: kind,pass,seconds,share,calls,flops,bytes.
  void write_csv(Context& ctx, const std::filesystem::path& file, double wall_seconds);
  void clear();

 private:
  struct Pending {
    size_t start, stop;  // events
    const char* kind;
    Pass pass;
    ProfileWork work;
  };
  void add(const std::string& kind, Pass pass, double seconds, const ProfileWork& work);
  size_t record_event(Context& ctx);

  std::map<std::pair<std::string, Pass>, Row> totals_;
  std::vector<void*> events_;      // CUDA event pool (cudaEvent_t), reused after collect()
  size_t events_used_ = 0;
  std::vector<Pending> pending_;   // GPU calls not collected yet
};

// Times the enclosing block as one call of `kind` when ctx has a profiler (Context::set_profiler);
// otherwise does nothing. The work may be given late (set_work), once the output's size is known.
class ProfileScope {
 public:
  ProfileScope(Context& ctx, const char* kind, Pass pass, ProfileWork work = {});
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;
  void set_work(const ProfileWork& work) { work_ = work; }

 private:
  Context& ctx_;
  const char* kind_;
  Pass pass_;
  ProfileWork work_;
  Profiler::Mark mark_;
};

// Bytes of the tensors' elements, for ProfileWork::bytes.
double tensor_bytes(const Tensor& a, const Tensor& b = Tensor());

}  // namespace cuface
