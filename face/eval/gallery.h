// An identification gallery on disk (`cuface gallery`, read by `cuface identify`): a folder of
//
//   gallery.json     {"format": "cuface-gallery", "version": 1, "embedding_size": D, "identities": N,
//                     "images": M, "dtype": "float32", "bytes_per_row": 4 D,
//                     "model": {"file": the checkpoint, "fingerprint": "crc32:XXXXXXXX"}, "command": ...}
//   templates.npy    f32 [N, D]: row t is identity t's template (identification.h: the normalised
//                    mean of its images' normalised embeddings)
//   templates.txt    N lines: identity t's name
//   images.npy       f32 [M, D]: every enrolled image's normalised embedding, kept so that adding
//                    images later recomputes templates exactly
//   images.txt       M lines: "<template row>\t<image path>"
//
// numpy.load reads both matrices. The fingerprint is the CRC-32 of the checkpoint file's bytes: a
// gallery answers only for the model that made it, since another model's embeddings (even of the
// same size) are not comparable with its templates.
//
// Writing is atomic per gallery: the files go to a temporary folder beside the target, which then
// replaces the target by two renames (old gallery aside, new one in place, old one removed).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace cuface::eval {

struct Gallery {
  std::string model_file;         // the checkpoint the embeddings came from
  std::string model_fingerprint;  // model_fingerprint(model_file)
  std::vector<std::string> names;  // identity of each template row
  Tensor templates;                // f32 [names, D], CPU
  Tensor image_rows;               // f32 [images, D], normalised, CPU
  std::vector<int> image_identity;          // template row of each image row
  std::vector<std::string> image_paths;     // each image row's source

  int64_t embedding_size() const { return templates.defined() ? templates.size(1) : image_rows.size(1); }
};

// "crc32:XXXXXXXX" of the file's bytes. An unreadable file is an error naming it.
std::string model_fingerprint(const std::filesystem::path& checkpoint);

// Adds image rows (any scale; normalised here) whose identities are named by `names` (one per row):
// a name already in the gallery extends that identity, a new one is appended. Every template is
// recomputed from the kept image rows.
void add_images(Gallery& gallery, const Tensor& rows, const std::vector<std::string>& names,
                const std::vector<std::string>& paths);

// A model may use the gallery only when its embeddings have the gallery's size and its checkpoint has
// the gallery's fingerprint; otherwise one error naming the folder, both models and what differs.
void check_gallery_model(const Gallery& gallery, const std::filesystem::path& folder, int64_t embedding_size,
                         const std::filesystem::path& model_file, const std::string& fingerprint);

// Errors name the folder and what is wrong with it ("not found", a missing file, rows that disagree).
Gallery read_gallery(const std::filesystem::path& folder);
// `command` is recorded in gallery.json.
void write_gallery(const std::filesystem::path& folder, const Gallery& gallery, const std::string& command);

}  // namespace cuface::eval
