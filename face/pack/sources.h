// What `cuface pack` reads: the listing of an input (folder tree, list file, UTKFace folder, MXNet
// RecordIO, or the original project's .bin/.idx pair) as items with labels, and each item's bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "face/image/align.h"

namespace cuface {

class MappedFile;
class RecordIOFile;

struct SourceItem {
  std::string path;      // relative to the listing's root ("Name/Name_0001.jpg"), or "train.rec:KEY"
  std::string identity;  // class name before dense numbering; empty when the input has no identities
  int8_t gender = -1;
  int16_t age = -1;
  uint64_t offset = 0;   // RecordIO: where the record starts in the .rec; legacy: first image byte in the .bin
  uint64_t size = 0;     // legacy: the image's bytes in the .bin
};

// An entry of the input that could not be listed, and why.
struct ListingProblem {
  std::string path, reason;
};

// Where item bytes come from: files under the root, or one container file.
enum class SourceContainer { Files, RecordIO, LegacyBin };

struct SourceListing {
  std::string root;  // folder the relative paths are under
  SourceContainer container = SourceContainer::Files;
  std::string container_path;  // the .rec or .bin file
  std::vector<SourceItem> items;
  std::vector<ListingProblem> problems;
};

// Which label a folder tree's folder names carry.
enum class TreeLabel { Identity, Gender, Age };

// root/<label>/<image files>: identity = folder name; or with TreeLabel::Gender the folder names are
// 0/1, male/female or m/f, with TreeLabel::Age non-negative integers (years or age classes).
SourceListing list_tree(const std::string& root, TreeLabel label);
// Text lines "path identity [gender age]" (tab-separated when paths contain spaces; '#' comments);
// relative paths are under the list file's folder; identity -1 means none, gender/age -1 unknown.
SourceListing list_file(const std::string& list_path);
// A folder of UTKFace images named AGE_GENDER_RACE_DATE*.jpg (no identities).
SourceListing list_utkface(const std::string& folder);
// train.rec (+ train.idx beside it), or a folder holding them.
SourceListing list_recordio(const std::string& rec_or_folder);
// The original project's pack: NAME.bin (JPEG files back to back) and NAME.idx, lines
// "path<TAB>label<TAB>start<TAB>end" with the image at bytes [start, end) of the .bin. INPUT is
// NAME.idx, NAME.bin or NAME; the label is an identity, a gender or an age as `label` says.
SourceListing list_legacy(const std::string& input, TreeLabel label);
// Dispatch on `--format` (tree, list, utkface, rec, legacy); throws cuface::Error for an unknown one.
SourceListing list_sources(const std::string& format, const std::string& input, TreeLabel tree_label);

// Reads items' encoded bytes: files from the root, RecordIO payloads from the mapped .rec.
class SourceReader {
 public:
  explicit SourceReader(const SourceListing& listing);
  ~SourceReader();
  // Returns false with the reason when the item cannot be read; never throws for bad data.
  bool read(const SourceItem& item, std::vector<uint8_t>& bytes, std::string& error) const;

 private:
  std::string root_;
  std::unique_ptr<RecordIOFile> recordio_;
  std::unique_ptr<MappedFile> bin_;
};

// The LFW landmark file format: "relative/path.jpg x1 y1 x2 y2 x3 y3 x4 y4 x5 y5" per line, points in
// the order of face/image/align.h. Throws cuface::Error naming a malformed line.
std::unordered_map<std::string, Landmarks> read_landmarks(const std::string& path);
// The landmarks of `path` in such a table: exact match, else the longest tail of its folders that the
// file names (so "lfw/images/Name/Name_0001.jpg" finds "Name/Name_0001.jpg"); null when none.
const Landmarks* find_landmarks(const std::unordered_map<std::string, Landmarks>& table, const std::string& path);

}  // namespace cuface
