// The images a command skips (unreadable, undecodable, without a face or landmarks), reported the
// same way by pack, embed, classify and the evaluations: the first 20 by name with their reason on
// stderr, the rest only counted, and at the end one line per distinct reason with its count.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "face/cli/progress.h"

namespace cuface::cli {

class SkipReport {
 public:
  // `progress`: the in-place progress line to end before a message (may be null).
  explicit SkipReport(Progress* progress = nullptr) : progress_(progress) {}
  void add(const std::string& name, const std::string& reason);
  int64_t count() const { return count_; }
  // "  N skipped: REASON" per reason, most frequent first (the first 20 reasons).
  void print_reasons() const;

 private:
  Progress* progress_;
  int64_t count_ = 0;
  std::map<std::string, int64_t> reasons_;
};

}  // namespace cuface::cli
