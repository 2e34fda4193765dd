// `cuface pack` end to end on real images of every input kind (LFW tree with alignment, ORL tree,
// Yale GIFs from a list file, UTKFace names, a RecordIO file), then read back and compared.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "data.h"
#include "engine/error.h"
#include "face/image/align.h"
#include "face/image/warp.h"
#include "face/pack/packer.h"
#include "face/pack/recordio.h"
#include "face/pack/sources.h"
#include "face/pack/verify.h"
#include "recordio_writer.h"

namespace cuface {
namespace {

using testing::fs::path;
using testing::shared_data;
using testing::ScratchDir;

Image decode_bytes(const uint8_t* data, size_t size) {
  Image image;
  std::string error;
  EXPECT_TRUE(decode_image(data, size, image, error)) << error;
  return image;
}
Image decode_record(const RecordView& r) {
  if (r.encoding == Encoding::Raw) {
    Image image(r.width, r.height);
    image.pixels.assign(r.data, r.data + r.size);
    return image;
  }
  return decode_bytes(r.data, r.size);
}
double psnr(const Image& a, const Image& b) {
  double squared = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) squared += std::pow(double(a.pixels[i]) - b.pixels[i], 2);
  return 10 * std::log10(255.0 * 255.0 / (squared / double(a.pixels.size())));
}

PackOptions options_for(const std::string& input, const std::string& format, const std::string& out) {
  PackOptions o;
  o.input = input;
  o.format = format;
  o.out = out;
  o.jobs = 2;
  return o;
}

// The first `count` LFW identity folders, linked into a fresh tree.
void link_lfw_identities(const ScratchDir& dir, int count) {
  testing::fs::create_directory(dir / "tree");
  std::vector<path> people;
  for (const auto& entry : testing::fs::directory_iterator(shared_data("lfw/images"))) people.push_back(entry.path());
  std::sort(people.begin(), people.end());
  for (int i = 0; i < count; ++i) testing::fs::create_directory_symlink(people[size_t(i)], path(dir / "tree") / people[size_t(i)].filename());
}

TEST(Packer, LfwTreeAlignedRawWithMinPerClass) {
  CUFACE_REQUIRE_SHARED_DATA("lfw");
  ScratchDir dir;
  link_lfw_identities(dir, 20);
  PackOptions o = options_for(dir / "tree", "tree", dir / "lfw");
  o.landmarks = shared_data("lfw/landmarks5.txt");
  o.min_per_class = 2;
  o.shards = 3;
  o.encoding = Encoding::Raw;
  const PackSummary summary = pack_images(o);

  // Expected from the folders themselves.
  std::map<std::string, int> per_person;
  for (const auto& person : testing::fs::directory_iterator(dir / "tree"))
    for (const auto& file : testing::fs::directory_iterator(person.path())) ++per_person[person.path().filename().string()], (void)file;
  int64_t kept_images = 0, kept_classes = 0, dropped = 0;
  for (const auto& [name, n] : per_person) {
    if (n >= 2) kept_images += n, ++kept_classes;
    else dropped += n;
  }
  EXPECT_EQ(summary.packed, kept_images);
  EXPECT_EQ(summary.classes, kept_classes);
  EXPECT_EQ(summary.dropped, dropped);
  EXPECT_EQ(summary.skipped, 0);
  ASSERT_EQ(summary.shard_files.size(), 3u);

  const Pack pack(dir / "lfw");
  ASSERT_EQ(pack.size(), kept_images);
  EXPECT_EQ(pack.classes(), kept_classes);
  const auto names = pack.metadata().at("identity_names").get<std::vector<std::string>>();
  const auto landmarks = read_landmarks(shared_data("lfw/landmarks5.txt"));
  EXPECT_EQ(verify_pack(pack, 2).first_bad, -1);
  for (int64_t i = 0; i < pack.size(); ++i) {
    const RecordView r = pack.record(i);
    const std::string source(r.source);
    ASSERT_EQ(source.substr(0, source.find('/')), names.at(size_t(r.labels.identity))) << source;
    ASSERT_EQ(r.encoding, Encoding::Raw);
    ASSERT_EQ(r.width, 112);
    if (i % 7) continue;
    // The stored pixels are the source warped by ITS OWN landmarks' alignment.
    const std::vector<uint8_t> bytes = read_file(shared_data("lfw/images/" + source));
    Affine map;
    ASSERT_TRUE(alignment_map(landmarks.at(source), 112, map));
    const Image expected = warp_to_size(decode_bytes(bytes.data(), bytes.size()), map, 112);
    ASSERT_EQ(std::vector<uint8_t>(r.data, r.data + r.size), expected.pixels) << source;
  }
  EXPECT_EQ(pack.metadata().at("images_per_class").size(), size_t(kept_classes));
  EXPECT_TRUE(pack.metadata().at("aligned").get<bool>());
}

TEST(Packer, OrlTreeCentreCropJpeg) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  ScratchDir dir;
  PackOptions o = options_for(shared_data("orl"), "tree", dir / "orl");
  o.size = 112;
  const PackSummary summary = pack_images(o);
  EXPECT_EQ(summary.packed, 400);
  EXPECT_EQ(summary.classes, 40);
  const Pack pack(dir / "orl");
  EXPECT_EQ(pack.metadata().at("images_per_class"), std::vector<int64_t>(40, 10));
  for (int64_t i = 0; i < pack.size(); i += 37) {
    const RecordView r = pack.record(i);
    ASSERT_EQ(r.encoding, Encoding::Jpeg);
    const std::vector<uint8_t> bytes = read_file(shared_data("orl/" + std::string(r.source)));
    const Image source = decode_bytes(bytes.data(), bytes.size());
    const Image expected = warp_to_size(source, centre_crop_map(92, 112, 112), 112);
    EXPECT_GT(psnr(decode_record(r), expected), 33.0) << r.source;
  }
}

TEST(Packer, YaleGifsFromAListFile) {
  CUFACE_REQUIRE_SHARED_DATA("yale");
  ScratchDir dir;
  std::string list = "# path identity [gender age]\n";
  int lines = 0;
  for (const auto& entry : testing::fs::directory_iterator(shared_data("yale"))) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("subject", 0) != 0) continue;
    const std::string subject = name.substr(0, name.find('.'));
    list += entry.path().string() + " " + subject + (lines % 2 ? "" : " 1 30") + "\n";
    ++lines;
  }
  testing::write_text(dir / "yale.txt", list);
  PackOptions o = options_for(dir / "yale.txt", "list", dir / "yale");
  o.encoding = Encoding::Raw;
  o.size = 64;
  const PackSummary summary = pack_images(o);
  EXPECT_EQ(summary.packed, lines);
  EXPECT_EQ(summary.classes, 15);
  const Pack pack(dir / "yale");
  int with_labels = 0;
  for (int64_t i = 0; i < pack.size(); ++i) {
    const RecordView r = pack.record(i);
    ASSERT_EQ(r.width, 64);
    if (r.labels.gender == 1 && r.labels.age == 30) ++with_labels;
    else ASSERT_TRUE(r.labels.gender == -1 && r.labels.age == -1);
  }
  EXPECT_EQ(with_labels, (lines + 1) / 2);
  // Yale GIFs are 320 x 243: the centre 243 x 243 square, shrunk 3.8x with the box prefilter.
  const RecordView r = pack.record(0);
  const std::vector<uint8_t> bytes = read_file(std::string(r.source));
  const Image expected = warp_to_size(decode_bytes(bytes.data(), bytes.size()), centre_crop_map(320, 243, 64), 64);
  EXPECT_EQ(decode_record(r).pixels, expected.pixels);
}

TEST(Packer, UtkfaceNamesGiveAgeAndGenderAndSourceBytesAreKept) {
  CUFACE_REQUIRE_SHARED_DATA("utkface");
  ScratchDir dir;
  testing::fs::create_directory(dir / "utk");
  std::vector<path> files;
  for (const auto& entry : testing::fs::directory_iterator(shared_data("utkface"))) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (size_t i = 0; i < 50; ++i) testing::fs::create_symlink(files[i * 97], path(dir / "utk") / files[i * 97].filename());
  testing::write_text(dir / "utk/notes.txt", "not a UTKFace name");
  PackOptions o = options_for(dir / "utk", "utkface", dir / "utk200");
  o.size = 200;  // the images are 200 x 200 already: their JPEG bytes are stored as they are
  std::vector<std::string> skipped;
  o.on_skip = [&](const std::string& path, const std::string& reason) { skipped.push_back(path + ": " + reason); };
  const PackSummary summary = pack_images(o);
  EXPECT_EQ(summary.packed, 50);
  EXPECT_EQ(summary.classes, 0);
  EXPECT_EQ(summary.skipped, 1);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("notes.txt"), std::string::npos);
  const Pack pack(dir / "utk200");
  for (int64_t i = 0; i < pack.size(); ++i) {
    const RecordView r = pack.record(i);
    const std::string name(r.source);
    EXPECT_EQ(r.labels.identity, -1);
    EXPECT_EQ(r.labels.age, std::stoi(name.substr(0, name.find('_'))));
    EXPECT_EQ(r.labels.gender, name[name.find('_') + 1] - '0');
    EXPECT_EQ(r.encoding, Encoding::Jpeg);
    ASSERT_EQ(std::vector<uint8_t>(r.data, r.data + r.size), read_file(shared_data("utkface/" + name))) << name;
  }
}

TEST(Packer, RecordIOAsInsightFaceWritesIt) {
  CUFACE_REQUIRE_SHARED_DATA("lfw");
  ScratchDir dir;
  const char* people[3] = {"Aaron_Peirsol", "Abdullah_Gul", "Adam_Sandler"};
  std::vector<std::vector<uint8_t>> images;
  std::vector<float> labels;
  for (int p = 0; p < 3; ++p)
    for (int k = 1; k <= 2; ++k) {
      char name[128];
      std::snprintf(name, sizeof name, "lfw/images/%s/%s_%04d.jpg", people[p], people[p], k);
      images.push_back(read_file(shared_data(name)));
      labels.push_back(float(10 * p + 5));  // sparse labels: packed densely as 0, 1, 2
    }
  testing::RecordIOWriter writer;
  std::vector<uint64_t> offsets;
  std::vector<int64_t> keys;
  const int n = int(images.size());
  // Record 0: flag 2, label [first key after the images, end of the identity records].
  offsets.push_back(writer.write(testing::image_record_payload(2, 0, {float(n + 1), float(n + 4)}, 0, {})));
  keys.push_back(0);
  for (int i = 0; i < n; ++i) {
    // Image 3 carries the magic word in its (8-byte aligned) id field: dmlc splits it in two parts.
    const uint64_t id = i == 3 ? uint64_t(kRecordIOMagic) : uint64_t(i);
    const bool multi_label = i % 2 == 1;  // flag > 0: identity is labels[0]
    const auto payload = multi_label ? testing::image_record_payload(2, 0, {labels[size_t(i)], 7.0f}, id, images[size_t(i)])
                                     : testing::image_record_payload(0, labels[size_t(i)], {}, id, images[size_t(i)]);
    offsets.push_back(writer.write(payload));
    keys.push_back(i + 1);
  }
  for (int c = 0; c < 3; ++c) {  // identity range records, as InsightFace appends them
    offsets.push_back(writer.write(testing::image_record_payload(2, 0, {float(1 + 2 * c), float(3 + 2 * c)}, 0, {})));
    keys.push_back(n + 1 + c);
  }
  writer.save(dir / "train.rec", dir / "train.idx", offsets, keys);

  // The split record reads back whole.
  const RecordIOFile file(dir / "train.rec");
  std::vector<uint8_t> payload;
  std::string error;
  ASSERT_TRUE(file.read(offsets[4], payload, error)) << error;
  ImageRecord record;
  ASSERT_TRUE(parse_image_record(payload, record, error)) << error;
  EXPECT_EQ(record.id, uint64_t(kRecordIOMagic));
  EXPECT_EQ(std::vector<uint8_t>(payload.begin() + std::ptrdiff_t(record.image_offset), payload.end()), images[3]);

  PackOptions o = options_for(dir.path(), "rec", dir / "rec");
  o.size = 250;  // LFW's own size: JPEG bytes kept as stored
  const PackSummary summary = pack_images(o);
  EXPECT_EQ(summary.packed, n);
  EXPECT_EQ(summary.classes, 3);
  EXPECT_EQ(summary.skipped, 0);
  const Pack pack(dir / "rec");
  for (int i = 0; i < n; ++i) {
    const RecordView r = pack.record(i);
    EXPECT_EQ(r.source, "train.rec:" + std::to_string(i + 1));
    EXPECT_EQ(r.labels.identity, i / 2);
    EXPECT_EQ(std::vector<uint8_t>(r.data, r.data + r.size), images[size_t(i)]);
  }
}

TEST(Packer, TheOriginalProjectsBinAndIdx) {
  // NAME.bin: JPEG files back to back; NAME.idx: "path<TAB>label<TAB>start<TAB>end" (end exclusive).
  CUFACE_REQUIRE_SHARED_DATA("utkface");
  ScratchDir dir;
  std::vector<path> files;
  for (const auto& entry : testing::fs::directory_iterator(shared_data("utkface"))) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<uint8_t> bin;
  std::string idx;
  std::vector<std::vector<uint8_t>> images;
  for (size_t i = 0; i < 6; ++i) {
    images.push_back(read_file(files[i * 11].string()));
    idx += files[i * 11].filename().string() + "\t" + std::to_string(i % 2) + "\t" + std::to_string(bin.size()) + "\t" +
           std::to_string(bin.size() + images.back().size()) + "\n";
    bin.insert(bin.end(), images.back().begin(), images.back().end());
  }
  testing::write_bytes(dir / "gender.bin", bin);
  testing::write_text(dir / "gender.idx", idx + "broken.jpg\t1\t0\t" + std::to_string(bin.size() + 10) + "\n");
  PackOptions o = options_for(dir / "gender.idx", "legacy", dir / "out");
  o.tree_label = TreeLabel::Gender;
  o.size = 200;  // UTKFace's own size: the bytes are kept
  const PackSummary summary = pack_images(o);
  EXPECT_EQ(summary.packed, 6);
  EXPECT_EQ(summary.skipped, 1);  // the range past the end of the .bin
  const Pack pack(dir / "out");
  for (int i = 0; i < 6; ++i) {
    const RecordView r = pack.record(i);
    EXPECT_EQ(r.labels.gender, i % 2);
    EXPECT_EQ(r.labels.identity, -1);
    EXPECT_EQ(std::vector<uint8_t>(r.data, r.data + r.size), images[size_t(i)]);
  }
  testing::write_text(dir / "bad.idx", "a.jpg\t1\t5\n");
  testing::write_bytes(dir / "bad.bin", bin);
  EXPECT_THROW(pack_images(options_for(dir / "bad", "legacy", dir / "bad_out")), Error);
}

TEST(Packer, UnreadableImagesAreSkippedOrWithStrictFatal) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  ScratchDir dir;
  testing::write_text(dir / "notes.pgm", "P5 not really");
  testing::write_text(dir / "list.txt", shared_data("orl/s1/1.pgm") + " a\n" + (dir / "missing.jpg").string() + " a\n" +
                                            (dir / "notes.pgm").string() + " b\n" + shared_data("orl/s2/1.pgm") + " b 0 41\n");
  PackOptions o = options_for(dir / "list.txt", "list", dir / "out");
  std::vector<std::string> skipped;
  o.on_skip = [&](const std::string& path, const std::string& reason) { skipped.push_back(path + ": " + reason); };
  const PackSummary summary = pack_images(o);
  EXPECT_EQ(summary.packed, 2);
  EXPECT_EQ(summary.skipped, 2);
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_NE(skipped[0].find("missing.jpg: cannot open"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[1].find("notes.pgm"), std::string::npos) << skipped[1];
  EXPECT_EQ(Pack(dir / "out").metadata().at("skipped").get<int>(), 2);

  ScratchDir strict_dir;
  o.out = strict_dir / "strict";
  o.strict = true;
  try {
    pack_images(o);
    ADD_FAILURE() << "--strict accepted a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.jpg"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(testing::fs::is_empty(strict_dir.path()));  // no shard, sidecar or temporary left
}

TEST(Packer, AnEarlierPackUnderTheSamePrefixIsNotOverwritten) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  ScratchDir dir;
  testing::write_text(dir / "list.txt", shared_data("orl/s1/1.pgm") + " a\n" + shared_data("orl/s1/2.pgm") + " a\n" +
                                            shared_data("orl/s2/1.pgm") + " b\n");
  PackOptions o = options_for(dir / "list.txt", "list", dir / "out");
  o.shards = 2;
  EXPECT_EQ(pack_images(o).packed, 3);
  // Again with one shard: writing would leave the two old shards beside a sidecar naming one.
  o.shards = 1;
  try {
    pack_images(o);
    ADD_FAILURE() << "an existing pack was overwritten";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(sidecar_path(dir / "out") + " already exists"), std::string::npos) << e.what();
  }
  // Its shards alone count too.
  testing::fs::remove(sidecar_path(dir / "out"));
  try {
    pack_images(o);
    ADD_FAILURE() << "an existing shard was overwritten";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out-0000"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(testing::fs::exists(shard_path(dir / "out", 0, 1)));
  // Another prefix that merely begins the same way is free.
  EXPECT_EQ(pack_images(options_for(dir / "list.txt", "list", dir / "ou")).packed, 3);
}

TEST(Packer, NothingToPackIsAnErrorNotAnEmptyPack) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  ScratchDir dir, out;
  // A tree's images sit in label folders; these lie directly in INPUT (Yale's layout) and are not read.
  testing::fs::copy_file(shared_data("orl/s1/1.pgm"), dir / "subject01.pgm");
  testing::fs::copy_file(shared_data("orl/s2/1.pgm"), dir / "subject02.pgm");
  try {
    pack_images(options_for(dir.path(), "tree", out / "empty"));
    ADD_FAILURE() << "an empty pack was written";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing to pack: 0 image(s) found in " + dir.path().string()), std::string::npos)
        << e.what();
  }
  // Every listed image unreadable: nothing packed, nothing written.
  testing::write_text(dir / "notes.pgm", "P5 not really");
  testing::write_text(dir / "list.txt", (dir / "notes.pgm").string() + " a\n");
  try {
    pack_images(options_for(dir / "list.txt", "list", out / "skipped"));
    ADD_FAILURE() << "a pack of skipped images was written";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing packed"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(testing::fs::is_empty(out.path()));
}

TEST(Packer, BadInputsGiveClearErrors) {
  ScratchDir dir;
  PackOptions o = options_for(dir / "nowhere", "tree", dir / "x");
  EXPECT_THROW(pack_images(o), Error);
  o.format = "zip";
  EXPECT_THROW(pack_images(o), Error);
  testing::write_text(dir / "bad.txt", "a.jpg\n");
  o = options_for(dir / "bad.txt", "list", dir / "x");
  try {
    pack_images(o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.txt:1"), std::string::npos) << e.what();
  }
  o.out = dir / "no/such/folder/x";
  EXPECT_THROW(pack_images(o), Error);
  o = options_for(dir / "bad.txt", "list", dir / "x");
  o.jobs = -3;  // was taken as "all cores"
  try {
    pack_images(o);
    ADD_FAILURE() << "--jobs -3 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--jobs"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cuface
