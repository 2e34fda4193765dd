#include "face/cli/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "engine/error.h"

namespace cuface::cli {

std::string format_duration(double seconds) {
  const long s = long(seconds + 0.5);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(text, sizeof text, "%ld:%02ld", s / 60, s % 60);
  return text;
}

double parse_duration(const std::string& text, const std::string& flag) {
  const std::string problem = flag + " '" + text + "': expected a duration such as 30m, 1h30m, 1.5h or 90s";
  double seconds = 0;
  size_t at = 0;
  CUFACE_CHECK(!text.empty() && text.find_first_not_of("0123456789.hms") == std::string::npos, problem);
  while (at < text.size()) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(text.substr(at), &used);
    } catch (const std::exception&) {
      throw Error(problem);
    }
    CUFACE_CHECK(std::isfinite(value), problem);
    at += used;
    const char unit = at < text.size() ? text[at++] : 's';
    CUFACE_CHECK(unit == 'h' || unit == 'm' || unit == 's', problem);
    seconds += value * (unit == 'h' ? 3600 : unit == 'm' ? 60 : 1);
  }
  return seconds;
}

Progress::Progress(std::string what, std::string unit)
    : what_(std::move(what)), unit_(std::move(unit)), start_(std::chrono::steady_clock::now()), last_(start_),
      terminal_(::isatty(STDERR_FILENO)) {}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, int64_t total) {
  const auto now = std::chrono::steady_clock::now();
  const double since_last = std::chrono::duration<double>(now - last_).count();
  if (since_last < (terminal_ ? 0.5 : 30.0) && done < total) return;
  last_ = now;
  const double elapsed = seconds();
  const double rate = elapsed > 0 ? double(done) / elapsed : 0;
  const double eta = rate > 0 ? double(total - done) / rate : 0;
  std::fprintf(stderr, "%s%s %lld/%lld %s  %.0f %s/s  ETA %s%s", terminal_ ? "\r" : "", what_.c_str(),
               (long long)done, (long long)total, unit_.c_str(), rate, unit_.c_str(), format_duration(eta).c_str(),
               terminal_ ? "   " : "\n");
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (terminal_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace cuface::cli
