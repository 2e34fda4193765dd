// InsightFace verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), read without Python.
//
// Each file is a pickle of the tuple (bins, issame_list): `bins` lists the JPEG bytes of the images,
// two per pair (pair i is images 2i and 2i+1), `issame_list` holds one bool per pair. Only the part
// of the pickle machine such files use is implemented: protocols 2 to 5, lists, tuples, byte strings
// (Python 2 `str` and Python 3 `bytes`), bools and small ints, the memo, frames. Anything else (a
// numpy object, a class, a corrupt or truncated stream) is an error naming the file and byte offset.
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace cuface::eval {

struct VerificationBin {
  std::vector<uint8_t> bytes;  // the whole file; images are ranges inside it
  struct Range {
    uint64_t offset = 0, size = 0;
  };
  std::vector<Range> images;  // 2 per pair
  std::vector<uint8_t> same;  // 1 per pair

  size_t pairs() const { return same.size(); }
  std::span<const uint8_t> image(size_t i) const { return {bytes.data() + images[i].offset, images[i].size}; }
};

VerificationBin read_verification_bin(const std::filesystem::path& file);
// `name` is used in error messages.
VerificationBin parse_verification_bin(std::vector<uint8_t> bytes, const std::string& name);

}  // namespace cuface::eval
