#include "engine/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "engine/atomic_file.h"

#if CUFACE_HAS_CUDA
#include "engine/cuda_context.h"
#endif

namespace cuface {

namespace {

double clock_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::Forward: return "forward";
    case Pass::Backward: return "backward";
    case Pass::Step: return "step";
  }
  return "";
}

double tensor_bytes(const Tensor& a, const Tensor& b) {
  return double(a.defined() ? a.bytes() : 0) + double(b.defined() ? b.bytes() : 0);
}

Profiler::~Profiler() {
#if CUFACE_HAS_CUDA
  for (void* event : events_) cudaEventDestroy(static_cast<cudaEvent_t>(event));  // no throwing here
#endif
}

size_t Profiler::record_event(Context& ctx) {
#if CUFACE_HAS_CUDA
  if (events_used_ == events_.size()) {
    cudaEvent_t event = nullptr;
    CUDA_CHECK(cudaEventCreate(&event));
    events_.push_back(event);
  }
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[events_used_]), cuda_stream(ctx)));
  return events_used_++;
#else
  (void)ctx;
  throw Error("Profiler: CUDA timing in a build without CUDA");
#endif
}

Profiler::Mark Profiler::start(Context& ctx) {
  Mark mark;
  if (ctx.is_cuda())
    mark.event = record_event(ctx);
  else
    mark.cpu_seconds = clock_seconds();
  return mark;
}

void Profiler::stop(Context& ctx, const Mark& mark, const char* kind, Pass pass, const ProfileWork& work) {
  if (ctx.is_cuda())
    pending_.push_back({mark.event, record_event(ctx), kind, pass, work});
  else
    add(kind, pass, clock_seconds() - mark.cpu_seconds, work);
}

void Profiler::add(const std::string& kind, Pass pass, double seconds, const ProfileWork& work) {
  Row& row = totals_[{kind, pass}];
  row.kind = kind;
  row.pass = pass;
  row.seconds += seconds;
  row.calls += 1;
  row.work.flops += work.flops;
  row.work.bytes += work.bytes;
}

void Profiler::collect(Context& ctx) {
  if (pending_.empty()) return;
#if CUFACE_HAS_CUDA
  ctx.synchronize();
  for (const Pending& p : pending_) {
    float milliseconds = 0;
    CUDA_CHECK(cudaEventElapsedTime(&milliseconds, static_cast<cudaEvent_t>(events_[p.start]),
                                    static_cast<cudaEvent_t>(events_[p.stop])));
    add(p.kind, p.pass, milliseconds / 1e3, p.work);
  }
#else
  (void)ctx;
#endif
  pending_.clear();
  events_used_ = 0;
}

std::vector<Profiler::Row> Profiler::rows(Context& ctx) {
  collect(ctx);
  std::vector<Row> out;
  for (const auto& [key, row] : totals_) out.push_back(row);
  std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) { return a.seconds > b.seconds; });
  return out;
}

std::string Profiler::table(Context& ctx, double wall_seconds, const std::string& title) {
  const std::vector<Row> all = rows(ctx);
  double profiled = 0;
  for (const Row& r : all) profiled += r.seconds;
  const double whole = wall_seconds > 0 ? std::max(wall_seconds, profiled) : profiled;
  std::string text = title + "\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-22s %-8s %11s %7s %8s %10s %14s\n", "kind", "pass", "time (ms)", "share",
                "calls", "ms/call", "rate");
  text += line;
  auto print = [&](const std::string& kind, const char* pass, double seconds, int64_t calls, const std::string& rate) {
    std::snprintf(line, sizeof line, "%-22s %-8s %11.1f %6.1f%% %8lld %10.3f %14s\n", kind.c_str(), pass,
                  seconds * 1e3, whole > 0 ? 100 * seconds / whole : 0.0, (long long)calls,
                  calls > 0 ? seconds * 1e3 / double(calls) : 0.0, rate.c_str());
    text += line;
  };
  for (const Row& r : all) {
    char rate[32] = "";
    if (r.work.flops > 0 && r.seconds > 0)
      std::snprintf(rate, sizeof rate, "%.1f GFLOP/s", r.work.flops / r.seconds / 1e9);
    else if (r.work.bytes > 0 && r.seconds > 0)
      std::snprintf(rate, sizeof rate, "%.2f GB/s", r.work.bytes / r.seconds / 1e9);
    print(r.kind, pass_name(r.pass), r.seconds, r.calls, rate);
  }
  if (wall_seconds > 0) print("(outside the scopes)", "", std::max(wall_seconds - profiled, 0.0), 0, "");
  return text;
}

void Profiler::write_csv(Context& ctx, const std::filesystem::path& file, double wall_seconds) {
  const std::vector<Row> all = rows(ctx);
  double profiled = 0;
  for (const Row& r : all) profiled += r.seconds;
  const double whole = wall_seconds > 0 ? std::max(wall_seconds, profiled) : profiled;
  std::string text = "kind,pass,seconds,share,calls,flops,bytes\n";
  char line[256];
  for (const Row& r : all) {
    std::snprintf(line, sizeof line, "%s,%s,%.6f,%.4f,%lld,%.0f,%.0f\n", r.kind.c_str(), pass_name(r.pass),
                  r.seconds, whole > 0 ? r.seconds / whole : 0.0, (long long)r.calls, r.work.flops, r.work.bytes);
    text += line;
  }
  write_file_atomically(file, text);
}

void Profiler::clear() {
  pending_.clear();
  events_used_ = 0;
  totals_.clear();
}

ProfileScope::ProfileScope(Context& ctx, const char* kind, Pass pass, ProfileWork work)
    : ctx_(ctx), kind_(kind), pass_(pass), work_(work) {
  if (Profiler* profiler = ctx_.profiler()) mark_ = profiler->start(ctx_);
}

ProfileScope::~ProfileScope() {
  if (Profiler* profiler = ctx_.profiler()) profiler->stop(ctx_, mark_, kind_, pass_, work_);
}

}  // namespace cuface
