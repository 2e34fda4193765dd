// Progress of long command-line work on stderr: count, rate and ETA, redrawn in place on a terminal
// (at most twice a second) and printed as a plain line every 30 s otherwise (logs stay short).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace cuface::cli {

class Progress {
 public:
  Progress(std::string what, std::string unit);  // e.g. ("packing", "images")
  void update(int64_t done, int64_t total);
  void finish();  // ends the in-place line
  double seconds() const;

 private:
  std::string what_, unit_;
  std::chrono::steady_clock::time_point start_, last_;
  bool terminal_;
  bool drawn_ = false;
};

// "1:02:03" / "2:03".
std::string format_duration(double seconds);

// Seconds in a duration written as numbers with units h, m, s ("30m", "1h30m", "1.5h", "90s"); a
// bare number is seconds. Anything else is an error naming `flag` and the text.
double parse_duration(const std::string& text, const std::string& flag);

}  // namespace cuface::cli
