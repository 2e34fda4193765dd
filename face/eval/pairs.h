// Verification pair lists: LFW's pairs.txt and a generic `pathA pathB 0|1` list.
//
// LFW format: a header `folds n` (View 2: `10 300`; a single `n` as in pairsDevTrain.txt is one
// fold), then per fold n same-person lines `name i j` and n different-person lines
// `name1 i name2 j`; image i of `name` is `name/name_000i.jpg` under the image root.
// Generic format: `pathA pathB 0|1` per line (1 = same person), paths relative to the image root or
// absolute, no spaces inside a path. In both, blank lines and lines starting with '#' are skipped.
// Every error names the file and line.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace cuface::eval {

struct VerificationPair {
  std::string first, second;  // image paths as written, normalised ("a/./b" -> "a/b", '/' separators)
  bool same = false;
  int line = 0;  // 1-based line in the pairs file
};

struct PairList {
  std::filesystem::path source;
  std::vector<VerificationPair> pairs;
  int folds = 0;  // the LFW header's fold count; 0 for a generic list (no folds of its own)
  bool lfw = false;

  // "pairs.txt:12" for error messages.
  std::string where(const VerificationPair& pair) const;
  // Distinct images in order of first mention: what has to be embedded.
  std::vector<std::string> images() const;
};

// Reads either format, told apart by the first line: one or two fields is an LFW header.
PairList read_pairs(const std::filesystem::path& file);

// Every image must exist under `root`. For LFW lists a missing person folder is reported as an
// unknown name, a missing file as a missing image; both name the pairs file's line.
void check_pair_images(const PairList& pairs, const std::filesystem::path& root);

// An image as a lookup key: `image` is relative to `root` (or absolute); the key is its path relative
// to `root` when it lies under it, else its absolute path, normalised either way.
std::string image_key(const std::filesystem::path& image, const std::filesystem::path& root);
// The key of an image listed in a file such as emb.txt: relative to `root`, absolute, or relative to
// the working directory when it starts with `root` itself (e.g. `data/lfw/A/A_0001.jpg` with root
// `data/lfw`).
std::string listed_image_key(const std::filesystem::path& listed, const std::filesystem::path& root);

// The row of each pair's two images in a table keyed by image_key (e.g. from an emb.txt). An image
// absent from the table is an error naming the pairs file's line and `table_name`.
std::vector<std::array<int64_t, 2>> pair_rows(const PairList& pairs, const std::filesystem::path& root,
                                              const std::unordered_map<std::string, int64_t>& row_of_image,
                                              const std::string& table_name);

}  // namespace cuface::eval
