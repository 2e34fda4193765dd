#include "face/eval/pairs.h"

#include <charconv>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "engine/error.h"

namespace cuface::eval {

namespace fs = std::filesystem;

namespace {

struct Line {
  int number = 0;
  std::string text;
  std::vector<std::string> fields;
};

// The non-blank, non-comment lines of a file, split on whitespace.
std::vector<Line> read_lines(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot open pairs file " + file.string());
  std::vector<Line> lines;
  std::string text;
  for (int number = 1; std::getline(in, text); ++number) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    Line line{number, text, {}};
    std::istringstream words(text);
    for (std::string w; words >> w;) line.fields.push_back(w);
    if (line.fields.empty() || line.fields[0][0] == '#') continue;
    lines.push_back(std::move(line));
  }
  return lines;
}

bool parse_int(const std::string& s, int& value) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, value);
  return ec == std::errc() && ptr == end;
}

std::string normalised(const std::string& path) { return fs::path(path).lexically_normal().generic_string(); }

[[noreturn]] void fail_at(const fs::path& file, int line, const std::string& message) {
  throw Error(file.string() + ":" + std::to_string(line) + ": " + message);
}

std::string lfw_image(const fs::path& file, const Line& line, const std::string& name, const std::string& number) {
  int i = 0;
  if (!parse_int(number, i) || i < 1)
    fail_at(file, line.number, "'" + number + "' is not an image number (a positive integer) in '" + line.text + "'");
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "_%04d.jpg", i);
  return name + "/" + name + suffix;
}

PairList read_lfw(const fs::path& file, const std::vector<Line>& lines) {
  const Line& header = lines[0];
  int folds = 1, per_fold = 0;
  const bool ok = header.fields.size() == 1
                      ? parse_int(header.fields[0], per_fold)
                      : parse_int(header.fields[0], folds) && parse_int(header.fields[1], per_fold);
  if (!ok || folds < 1 || per_fold < 1)
    fail_at(file, header.number, "bad header '" + header.text + "': expected 'folds pairs_per_fold' (e.g. '10 300')");

  PairList list;
  list.source = file;
  list.lfw = true;
  list.folds = folds;
  for (size_t k = 1; k < lines.size(); ++k) {
    const Line& line = lines[k];
    VerificationPair pair;
    pair.line = line.number;
    if (line.fields.size() == 3) {
      pair.same = true;
      pair.first = lfw_image(file, line, line.fields[0], line.fields[1]);
      pair.second = lfw_image(file, line, line.fields[0], line.fields[2]);
    } else if (line.fields.size() == 4) {
      pair.first = lfw_image(file, line, line.fields[0], line.fields[1]);
      pair.second = lfw_image(file, line, line.fields[2], line.fields[3]);
    } else {
      fail_at(file, line.number, "expected 'name i j' or 'name1 i name2 j', found " +
                                     std::to_string(line.fields.size()) + " fields in '" + line.text + "'");
    }
    list.pairs.push_back(std::move(pair));
  }
  const size_t expected = size_t(folds) * size_t(per_fold) * 2;
  if (list.pairs.size() != expected)
    throw Error(file.string() + ": the header (line " + std::to_string(header.number) + ") promises " +
                std::to_string(folds) + " folds of 2 x " + std::to_string(per_fold) + " = " + std::to_string(expected) +
                " pairs, the file has " + std::to_string(list.pairs.size()));
  return list;
}

PairList read_generic(const fs::path& file, const std::vector<Line>& lines) {
  PairList list;
  list.source = file;
  for (const Line& line : lines) {
    if (line.fields.size() != 3)
      fail_at(file, line.number, "expected 'pathA pathB 0|1', found " + std::to_string(line.fields.size()) +
                                     " fields in '" + line.text + "'");
    const std::string& label = line.fields[2];
    if (label != "0" && label != "1")
      fail_at(file, line.number, "the label must be 0 (different) or 1 (same), found '" + label + "'" +
                                     (&line == &lines.front() ? " (an LFW pairs.txt starts with a 'folds n' header)" : ""));
    list.pairs.push_back({normalised(line.fields[0]), normalised(line.fields[1]), label == "1", line.number});
  }
  return list;
}

}  // namespace

std::string PairList::where(const VerificationPair& pair) const {
  return source.string() + ":" + std::to_string(pair.line);
}

std::vector<std::string> PairList::images() const {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  for (const VerificationPair& p : pairs)
    for (const std::string* image : {&p.first, &p.second})
      if (seen.insert(*image).second) out.push_back(*image);
  return out;
}

PairList read_pairs(const fs::path& file) {
  const std::vector<Line> lines = read_lines(file);
  if (lines.empty()) throw Error("pairs file " + file.string() + " has no pairs");
  const std::vector<std::string>& first = lines[0].fields;
  // Generic lines have three fields; LFW's header has one or two.
  const bool lfw_header = first.size() <= 2;
  PairList list = lfw_header ? read_lfw(file, lines) : read_generic(file, lines);
  if (list.pairs.empty()) throw Error("pairs file " + file.string() + " has no pairs");
  return list;
}

void check_pair_images(const PairList& pairs, const fs::path& root) {
  for (const VerificationPair& p : pairs.pairs)
    for (const std::string* image : {&p.first, &p.second}) {
      const fs::path path = root / *image;
      if (fs::is_regular_file(path)) continue;
      if (pairs.lfw && !fs::is_directory(path.parent_path()))
        throw Error(pairs.where(p) + ": name '" + path.parent_path().filename().string() + "' not found (no folder " +
                    path.parent_path().string() + ")");
      throw Error(pairs.where(p) + ": image " + path.string() + " not found");
    }
}

std::string image_key(const fs::path& image, const fs::path& root) {
  const fs::path absolute_root = fs::absolute(root).lexically_normal();
  const fs::path absolute_image = fs::absolute(root / image).lexically_normal();
  const fs::path relative = absolute_image.lexically_relative(absolute_root);
  if (!relative.empty() && *relative.begin() != "..") return relative.generic_string();
  return absolute_image.generic_string();
}

std::string listed_image_key(const fs::path& listed, const fs::path& root) {
  if (listed.is_relative()) {
    const fs::path normal = listed.lexically_normal(), normal_root = root.lexically_normal();
    const fs::path rest = normal.lexically_relative(normal_root);
    if (normal_root != "." && !rest.empty() && *rest.begin() != "..") return image_key(rest, root);
  }
  return image_key(listed, root);
}

std::vector<std::array<int64_t, 2>> pair_rows(const PairList& pairs, const fs::path& root,
                                              const std::unordered_map<std::string, int64_t>& row_of_image,
                                              const std::string& table_name) {
  std::vector<std::array<int64_t, 2>> rows;
  rows.reserve(pairs.pairs.size());
  for (const VerificationPair& p : pairs.pairs) {
    std::array<int64_t, 2> r{};
    for (int k = 0; k < 2; ++k) {
      const std::string& image = k == 0 ? p.first : p.second;
      auto it = row_of_image.find(image_key(image, root));
      if (it == row_of_image.end())
        throw Error(pairs.where(p) + ": image " + image + " is not in " + table_name + " (looked up as " +
                    image_key(image, root) + "; --images is the folder the pairs' paths are relative to)");
      r[size_t(k)] = it->second;
    }
    rows.push_back(r);
  }
  return rows;
}

}  // namespace cuface::eval
