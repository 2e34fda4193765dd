#include "face/eval/gallery.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "engine/atomic_file.h"
#include "engine/error.h"
#include "face/eval/identification.h"
#include "face/eval/npy.h"
#include "face/pack/crc32.h"

namespace cuface::eval {

namespace fs = std::filesystem;

namespace {

constexpr int kGalleryVersion = 1;

}  // namespace

std::string model_fingerprint(const fs::path& checkpoint) {
  std::ifstream in(checkpoint, std::ios::binary);
  if (!in) throw Error("cannot open " + checkpoint.string() + " to fingerprint it");
  std::vector<char> chunk(1 << 20);
  uint32_t crc = 0;
  while (in.read(chunk.data(), std::streamsize(chunk.size())) || in.gcount() > 0)
    crc = crc32(chunk.data(), size_t(in.gcount()), crc);
  char text[16];
  std::snprintf(text, sizeof text, "crc32:%08x", unsigned(crc));
  return text;
}

void add_images(Gallery& gallery, const Tensor& rows, const std::vector<std::string>& names,
                const std::vector<std::string>& paths) {
  CUFACE_CHECK(rows.rank() == 2 && size_t(rows.size(0)) == names.size() && names.size() == paths.size(),
               "add_images: " + std::to_string(names.size()) + " names and " + std::to_string(paths.size()) +
                   " paths for rows " + rows.str());
  if (gallery.image_rows.defined())
    CUFACE_CHECK(rows.size(1) == gallery.embedding_size(),
                 "the new embeddings have " + std::to_string(rows.size(1)) + " dimensions, the gallery's " +
                     std::to_string(gallery.embedding_size()));
  std::map<std::string, int> row_of;
  for (size_t t = 0; t < gallery.names.size(); ++t) row_of[gallery.names[t]] = int(t);
  for (size_t i = 0; i < names.size(); ++i) {
    auto [at, is_new] = row_of.try_emplace(names[i], int(gallery.names.size()));
    if (is_new) gallery.names.push_back(names[i]);
    gallery.image_identity.push_back(at->second);
    gallery.image_paths.push_back(paths[i]);
  }
  const Tensor unit = normalised_rows(rows);
  const int64_t old_rows = gallery.image_rows.defined() ? gallery.image_rows.size(0) : 0;
  Tensor all = Tensor::empty({old_rows + unit.size(0), unit.size(1)});
  if (old_rows > 0) all.slice(0, old_rows).copy_from(gallery.image_rows);
  if (unit.size(0) > 0) all.slice(old_rows, all.size(0)).copy_from(unit);
  gallery.image_rows = all;
  gallery.templates = identity_templates(all, gallery.image_identity, int(gallery.names.size()));
}

void check_gallery_model(const Gallery& gallery, const fs::path& folder, int64_t embedding_size,
                         const fs::path& model_file, const std::string& fingerprint) {
  if (embedding_size != gallery.embedding_size())
    throw Error("gallery " + folder.string() + " holds " + std::to_string(gallery.embedding_size()) +
                "-d embeddings of " + gallery.model_file + ", but --model " + model_file.string() + " gives " +
                std::to_string(embedding_size) + "-d ones: use the gallery's model, or build a gallery with this one");
  if (fingerprint != gallery.model_fingerprint)
    throw Error("gallery " + folder.string() + " was made with " + gallery.model_file + " (" +
                gallery.model_fingerprint + "), --model " + model_file.string() + " is another model (" + fingerprint +
                "): embeddings of different models are not comparable; build a gallery with this one");
}

Gallery read_gallery(const fs::path& folder) {
  const fs::path manifest = folder / "gallery.json";
  if (!fs::is_directory(folder)) throw Error("gallery " + folder.string() + " not found (make one with cuface gallery)");
  if (!fs::exists(manifest))
    throw Error("gallery " + folder.string() + " has no gallery.json: not a gallery made by cuface gallery");
  std::ifstream in(manifest);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(manifest.string() + ": not valid JSON (" + e.what() + ")");
  }
  const auto bad = [&](const std::string& why) { return Error("gallery " + folder.string() + ": " + why); };
  if (json.value("format", "") != "cuface-gallery") throw bad("gallery.json's format is not cuface-gallery");
  if (json.value("version", 0) != kGalleryVersion)
    throw bad("version " + json.value("version", nlohmann::json()).dump() + " is not the " +
              std::to_string(kGalleryVersion) + " this cuface reads");

  Gallery g;
  g.model_file = json["model"].value("file", "");
  g.model_fingerprint = json["model"].value("fingerprint", "");
  const Embeddings templates = read_embeddings(folder / "templates.npy");
  const Embeddings images = read_embeddings(folder / "images.npy");
  g.names = templates.paths;
  g.templates = templates.matrix;
  g.image_rows = images.matrix;
  for (size_t i = 0; i < images.paths.size(); ++i) {
    const std::string& line = images.paths[i];
    const size_t tab = line.find('\t');
    char* end = nullptr;
    const long row = tab == std::string::npos ? -1 : std::strtol(line.c_str(), &end, 10);
    if (tab == std::string::npos || end != line.c_str() + tab || row < 0 || row >= long(g.names.size()))
      throw bad("images.txt line " + std::to_string(i + 1) + " is not '<template row>\\t<path>' with a row below " +
                std::to_string(g.names.size()));
    g.image_identity.push_back(int(row));
    g.image_paths.push_back(line.substr(tab + 1));
  }
  const int64_t dim = json.value("embedding_size", int64_t(-1));
  if (g.templates.size(1) != dim || g.image_rows.size(1) != dim)
    throw bad("templates.npy has " + std::to_string(g.templates.size(1)) + " columns and images.npy " +
              std::to_string(g.image_rows.size(1)) + ", gallery.json says " + std::to_string(dim));
  return g;
}

void write_gallery(const fs::path& folder, const Gallery& g, const std::string& command) {
  const fs::path target = fs::absolute(folder).lexically_normal();
  const std::string pid = std::to_string(::getpid());
  const fs::path temporary = target.string() + ".tmp." + pid, previous = target.string() + ".old." + pid;
  fs::remove_all(temporary);
  fs::create_directories(temporary);
  try {
    write_embeddings(temporary / "templates.npy", {g.templates, g.names});
    std::vector<std::string> lines;
    for (size_t i = 0; i < g.image_paths.size(); ++i)
      lines.push_back(std::to_string(g.image_identity[i]) + "\t" + g.image_paths[i]);
    write_embeddings(temporary / "images.npy", {g.image_rows, lines});
    const nlohmann::json manifest = {{"format", "cuface-gallery"},
                                     {"version", kGalleryVersion},
                                     {"embedding_size", g.embedding_size()},
                                     {"identities", g.names.size()},
                                     {"images", g.image_paths.size()},
                                     {"dtype", "float32"},
                                     {"bytes_per_row", 4 * g.embedding_size()},
                                     {"model", {{"file", g.model_file}, {"fingerprint", g.model_fingerprint}}},
                                     {"command", command}};
    write_file_atomically(temporary / "gallery.json", manifest.dump(2) + "\n");
    if (fs::exists(target)) fs::rename(target, previous);
    fs::rename(temporary, target);
    fs::remove_all(previous);
  } catch (...) {
    std::error_code ignored;
    if (fs::exists(previous, ignored) && !fs::exists(target, ignored)) fs::rename(previous, target, ignored);
    fs::remove_all(temporary, ignored);
    throw;
  }
}

}  // namespace cuface::eval
