#include "face/pack/sources.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "face/image/image.h"
#include "face/pack/mapped_file.h"
#include "face/pack/recordio.h"

namespace cuface {

namespace fs = std::filesystem;

namespace {

std::string lowercase(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Whole-string integer parse; false for anything else.
bool parse_int(const std::string& text, long& value) {
  if (text.empty()) return false;
  size_t used = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == text.size();
}

bool parse_gender(const std::string& name, int8_t& gender) {
  const std::string n = lowercase(name);
  if (n == "0" || n == "m" || n == "male" || n == "man") gender = 0;
  else if (n == "1" || n == "f" || n == "female" || n == "woman") gender = 1;
  else return false;
  return true;
}

std::vector<fs::path> sorted_entries(const fs::path& folder) {
  std::vector<fs::path> entries;
  for (const auto& entry : fs::directory_iterator(folder)) entries.push_back(entry.path());
  std::sort(entries.begin(), entries.end());
  return entries;
}

void require_folder(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) throw Error("input " + path + " is not a folder");
}

}  // namespace

SourceListing list_tree(const std::string& root, TreeLabel label) {
  require_folder(root);
  SourceListing listing;
  listing.root = root;
  for (const fs::path& folder : sorted_entries(root)) {
    if (!fs::is_directory(folder)) continue;  // READMEs and the like beside the label folders
    const std::string name = folder.filename().string();
    if (name.empty() || name[0] == '.') continue;
    SourceItem base;
    long age;
    if (label == TreeLabel::Identity) {
      base.identity = name;
    } else if (label == TreeLabel::Gender) {
      if (!parse_gender(name, base.gender)) {
        listing.problems.push_back({name + "/", "folder name is not a gender (0/1, male/female, m/f)"});
        continue;
      }
    } else {
      if (!parse_int(name, age) || age < 0 || age > 32767) {
        listing.problems.push_back({name + "/", "folder name is not an age"});
        continue;
      }
      base.age = int16_t(age);
    }
    for (const fs::path& file : sorted_entries(folder)) {
      const std::string file_name = file.filename().string();
      if (!fs::is_regular_file(file) || file_name[0] == '.') continue;
      SourceItem item = base;
      item.path = name + "/" + file_name;
      listing.items.push_back(std::move(item));
    }
  }
  return listing;
}

SourceListing list_file(const std::string& list_path) {
  std::ifstream in(list_path);
  if (!in) throw Error("cannot open list file " + list_path);
  SourceListing listing;
  listing.root = fs::path(list_path).parent_path().string();
  if (listing.root.empty()) listing.root = ".";
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    std::vector<std::string> fields;
    if (line.find('\t') != std::string::npos) {
      std::istringstream parts(line);
      for (std::string f; std::getline(parts, f, '\t');)
        if (!f.empty()) fields.push_back(f);
    } else {
      std::istringstream parts(line);
      for (std::string f; parts >> f;) fields.push_back(f);
    }
    const std::string where = list_path + ":" + std::to_string(number);
    if (fields.size() != 2 && fields.size() != 4)
      throw Error(where + ": expected 'path identity [gender age]', got " + std::to_string(fields.size()) + " fields");
    SourceItem item;
    item.path = fields[0];
    if (fields[1] != "-1") item.identity = fields[1];
    if (fields.size() == 4) {
      long gender, age;
      if (!parse_int(fields[2], gender) || gender < -1 || gender > 1)
        throw Error(where + ": gender must be 0 (male), 1 (female) or -1 (unknown), got '" + fields[2] + "'");
      if (!parse_int(fields[3], age) || age < -1 || age > 32767)
        throw Error(where + ": age must be a non-negative integer or -1 (unknown), got '" + fields[3] + "'");
      item.gender = int8_t(gender);
      item.age = int16_t(age);
    }
    listing.items.push_back(std::move(item));
  }
  return listing;
}

SourceListing list_utkface(const std::string& folder) {
  require_folder(folder);
  SourceListing listing;
  listing.root = folder;
  for (const fs::path& file : sorted_entries(folder)) {
    const std::string name = file.filename().string();
    if (!fs::is_regular_file(file) || name[0] == '.') continue;
    std::vector<std::string> fields;
    std::istringstream parts(name);
    for (std::string f; fields.size() < 3 && std::getline(parts, f, '_');) fields.push_back(f);
    long age, gender, race;
    if (fields.size() < 3 || !parse_int(fields[0], age) || !parse_int(fields[1], gender) ||
        !parse_int(fields[2], race) || age < 0 || age > 150 || (gender != 0 && gender != 1)) {
      listing.problems.push_back({name, "not a UTKFace name (AGE_GENDER_RACE_DATE.jpg)"});
      continue;
    }
    SourceItem item;
    item.path = name;
    item.age = int16_t(age);
    item.gender = int8_t(gender);
    listing.items.push_back(std::move(item));
  }
  return listing;
}

SourceListing list_recordio(const std::string& rec_or_folder) {
  std::error_code ec;
  fs::path rec = rec_or_folder;
  if (fs::is_directory(rec, ec)) rec /= "train.rec";
  fs::path idx = rec;
  idx.replace_extension(".idx");
  SourceListing listing;
  listing.root = rec.parent_path().string();
  listing.container = SourceContainer::RecordIO;
  listing.container_path = rec.string();
  const auto index = read_recordio_index(idx.string());
  RecordIOFile file(rec.string());

  std::unordered_map<int64_t, uint64_t> offsets;
  for (const auto& [key, offset] : index) offsets[key] = offset;
  std::vector<uint8_t> payload;
  std::string error;
  ImageRecord record;

  // Which keys hold images: InsightFace's header record 0, or every key. A header that promises
  // more images than the index lists is damaged (and must not make the listing allocate for them).
  std::vector<int64_t> keys;
  auto header = offsets.find(0);
  if (header != offsets.end() && file.read(header->second, payload, error) &&
      parse_image_record(payload, record, error) && record.flag > 0) {
    const float end = record.labels[0];
    if (!(end >= 1 && end <= float(index.size())))
      throw Error(rec.string() + ": its header record (key 0) announces images up to key " + std::to_string(end) +
                  ", but " + idx.string() + " lists only " + std::to_string(index.size()) + " records: one is damaged");
    for (int64_t key = 1; key < int64_t(end); ++key) keys.push_back(key);
  } else {
    for (const auto& entry : index) keys.push_back(entry.first);
  }

  const std::string name = rec.filename().string();
  for (int64_t key : keys) {
    const std::string path = name + ":" + std::to_string(key);
    auto it = offsets.find(key);
    if (it == offsets.end()) {
      listing.problems.push_back({path, "key missing from " + idx.string()});
      continue;
    }
    if (!file.read(it->second, payload, error) || !parse_image_record(payload, record, error)) {
      listing.problems.push_back({path, error});
      continue;
    }
    const float identity = record.identity();
    if (!(identity >= 0 && identity < 2147483647.0f)) {
      listing.problems.push_back({path, "identity label " + std::to_string(identity) + " is not a class"});
      continue;
    }
    SourceItem item;
    item.path = path;
    item.identity = std::to_string(int64_t(identity));
    item.offset = it->second;
    listing.items.push_back(std::move(item));
  }
  return listing;
}

SourceListing list_legacy(const std::string& input, TreeLabel label) {
  fs::path stem = input;
  if (stem.extension() == ".idx" || stem.extension() == ".bin") stem.replace_extension();
  const std::string idx = stem.string() + ".idx";
  std::ifstream in(idx);
  if (!in) throw Error("cannot open legacy index " + idx + " (expected NAME.idx beside NAME.bin)");
  SourceListing listing;
  listing.root = stem.parent_path().string();
  listing.container = SourceContainer::LegacyBin;
  listing.container_path = stem.string() + ".bin";
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<std::string> fields;
    std::istringstream parts(line);
    for (std::string f; std::getline(parts, f, '\t');) fields.push_back(f);
    long start, end, value;
    const std::string where = idx + ":" + std::to_string(number);
    if (fields.size() != 4 || !parse_int(fields[2], start) || !parse_int(fields[3], end) || start < 0 || end < start)
      throw Error(where + ": expected 'path<TAB>label<TAB>start<TAB>end'");
    SourceItem item;
    item.path = fields[0];
    item.offset = uint64_t(start);
    item.size = uint64_t(end - start);
    if (label == TreeLabel::Identity) {
      item.identity = fields[1];
    } else if (label == TreeLabel::Gender) {
      if (!parse_gender(fields[1], item.gender)) throw Error(where + ": label '" + fields[1] + "' is not a gender");
    } else {
      if (!parse_int(fields[1], value) || value < 0 || value > 32767)
        throw Error(where + ": label '" + fields[1] + "' is not an age");
      item.age = int16_t(value);
    }
    listing.items.push_back(std::move(item));
  }
  return listing;
}

SourceListing list_sources(const std::string& format, const std::string& input, TreeLabel tree_label) {
  if (format == "tree") return list_tree(input, tree_label);
  if (format == "list") return list_file(input);
  if (format == "utkface") return list_utkface(input);
  if (format == "rec") return list_recordio(input);
  if (format == "legacy") return list_legacy(input, tree_label);
  throw Error("unknown input format '" + format + "' (expected tree, list, utkface, rec or legacy)");
}

SourceReader::SourceReader(const SourceListing& listing) : root_(listing.root) {
  if (listing.container == SourceContainer::RecordIO) recordio_ = std::make_unique<RecordIOFile>(listing.container_path);
  if (listing.container == SourceContainer::LegacyBin) bin_ = std::make_unique<MappedFile>(listing.container_path);
}

SourceReader::~SourceReader() = default;

bool SourceReader::read(const SourceItem& item, std::vector<uint8_t>& bytes, std::string& error) const {
  if (recordio_) {
    ImageRecord record;
    if (!recordio_->read(item.offset, bytes, error) || !parse_image_record(bytes, record, error)) return false;
    bytes.erase(bytes.begin(), bytes.begin() + std::ptrdiff_t(record.image_offset));
    return true;
  }
  if (bin_) {
    if (item.offset > bin_->size() || item.size > bin_->size() - item.offset) {
      error = "bytes " + std::to_string(item.offset) + ".." + std::to_string(item.offset + item.size) + " lie past the end of " +
              bin_->path();
      return false;
    }
    bytes.assign(bin_->data() + item.offset, bin_->data() + item.offset + item.size);
    return true;
  }
  const fs::path path = fs::path(item.path).is_absolute() ? fs::path(item.path) : fs::path(root_) / item.path;
  try {
    bytes = read_file(path.string());
  } catch (const Error& e) {
    error = e.what();
    return false;
  }
  return true;
}

std::unordered_map<std::string, Landmarks> read_landmarks(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open landmark file " + path);
  std::unordered_map<std::string, Landmarks> landmarks;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream fields(line);
    std::string name;
    if (!(fields >> name) || name[0] == '#') continue;
    Landmarks points;
    for (Point& p : points)
      if (!(fields >> p.x >> p.y))
        throw Error(path + ":" + std::to_string(number) + ": expected a path and 10 coordinates");
    landmarks[name] = points;
  }
  return landmarks;
}

const Landmarks* find_landmarks(const std::unordered_map<std::string, Landmarks>& table, const std::string& path) {
  for (size_t start = 0; start != std::string::npos;) {
    auto it = table.find(path.substr(start));
    if (it != table.end()) return &it->second;
    start = path.find('/', start);
    if (start != std::string::npos) ++start;
  }
  return nullptr;
}

}  // namespace cuface
