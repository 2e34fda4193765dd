#include "face/cli/skip_report.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace cuface::cli {

namespace {
constexpr int64_t kNamed = 20;  // images named one by one; more would flood a terminal
constexpr size_t kReasons = 20;
}  // namespace

void SkipReport::add(const std::string& name, const std::string& reason) {
  if (count_ <= kNamed && progress_) progress_->finish();  // each message on its own line
  if (count_ < kNamed) std::fprintf(stderr, "skipped %s: %s\n", name.c_str(), reason.c_str());
  if (count_ == kNamed) std::fprintf(stderr, "(further skipped images are only counted)\n");
  ++count_;
  ++reasons_[reason];
}

void SkipReport::print_reasons() const {
  std::vector<std::pair<int64_t, std::string>> by_count;
  for (const auto& [reason, n] : reasons_) by_count.emplace_back(-n, reason);
  std::sort(by_count.begin(), by_count.end());
  for (size_t i = 0; i < by_count.size() && i < kReasons; ++i)
    std::fprintf(stderr, "  %lld skipped: %s\n", (long long)-by_count[i].first, by_count[i].second.c_str());
  if (by_count.size() > kReasons) {
    int64_t rest = 0;
    for (size_t i = kReasons; i < by_count.size(); ++i) rest -= by_count[i].first;
    std::fprintf(stderr, "  %lld skipped for %zu other reasons\n", (long long)rest, by_count.size() - kReasons);
  }
}

}  // namespace cuface::cli
