// Where the tests find the repository's files (fixtures, scripts): $CUFACE_SOURCE_DIR when set (test
// programs carried to another machine, as scripts/device_check.sh does), else the source folder they
// were built from (CUFACE_SOURCE_DIR, a compile definition).
#pragma once
#include <cstdlib>
#include <string>

namespace cuface::testing {

inline std::string source_dir() {
  const char* carried = std::getenv("CUFACE_SOURCE_DIR");
  return carried && *carried ? carried : CUFACE_SOURCE_DIR;
}

inline std::string fixture_path(const std::string& name) { return source_dir() + "/tests/fixtures/" + name; }

}  // namespace cuface::testing
