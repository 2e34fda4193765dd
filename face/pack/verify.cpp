#include "face/pack/verify.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "engine/error.h"

namespace cuface {

bool verify_record(const Pack& pack, int64_t i, std::string& error) {
  if (!pack.check(i, error)) return false;
  RecordView r;
  try {
    r = pack.record(i);
  } catch (const Error& e) {
    error = e.what();
    return false;
  }
  if (r.encoding == Encoding::Raw) return true;  // record() has checked its size against the geometry
  Image image;
  if (!decode_image(r.data, r.size, image, error)) return false;
  if (image.width != r.width || image.height != r.height) {
    error = "decodes to " + std::to_string(image.width) + "x" + std::to_string(image.height) + ", record says " +
            std::to_string(r.width) + "x" + std::to_string(r.height);
    return false;
  }
  return true;
}

VerifyResult verify_pack(const Pack& pack, int jobs, const std::function<void(int64_t, int64_t)>& progress) {
  VerifyResult result;
  result.records = pack.size();
  if (jobs <= 0) jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t chunk = int64_t(jobs) * 256;
  for (int64_t begin = 0; begin < pack.size() && result.first_bad < 0; begin += chunk) {
    const int64_t end = std::min(begin + chunk, pack.size());
    std::vector<std::string> errors(size_t(end - begin));
    std::vector<char> bad(size_t(end - begin), 0);
#pragma omp parallel for schedule(dynamic, 16) num_threads(jobs)
    for (int64_t i = begin; i < end; ++i) bad[size_t(i - begin)] = !verify_record(pack, i, errors[size_t(i - begin)]);
    for (int64_t i = begin; i < end; ++i) {
      if (!bad[size_t(i - begin)]) continue;
      result.first_bad = i;
      result.error = pack.describe(i) + ": " + errors[size_t(i - begin)];
      break;
    }
    if (progress) progress(end, pack.size());
  }
  return result;
}

}  // namespace cuface
