// face/eval/npy: round trip, the on-disk layout, numpy's own reading of it, and corrupt files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "common/reference.h"
#include "engine/error.h"
#include "face/eval/npy.h"
#include "scratch_dir.h"

namespace cuface::eval {
namespace {

using testing::ScratchDir;

std::string read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Npy, RoundTripAndLayout) {
  ScratchDir dir;
  const Tensor m = testing::random_tensor({37, 5}, 7);
  write_npy(dir / "m.npy", m);
  const Tensor back = read_npy(dir / "m.npy");
  ASSERT_EQ(back.shape(), m.shape());
  EXPECT_EQ(std::memcmp(back.raw(), m.raw(), m.bytes()), 0);

  const std::string bytes = read_bytes(dir / "m.npy");
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_length = uint8_t(bytes[8]) | size_t(uint8_t(bytes[9])) << 8;
  const size_t data_offset = 10 + header_length;
  EXPECT_EQ(data_offset % 64, 0u);
  EXPECT_EQ(bytes[data_offset - 1], '\n');
  EXPECT_NE(bytes.find("'shape': (37, 5)"), std::string::npos);
  EXPECT_EQ(bytes.size(), data_offset + m.bytes());
  // Nothing but the file itself is left behind (the temporary was renamed).
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(Npy, EmptyMatrixRoundTrips) {
  ScratchDir dir;
  write_npy(dir / "e.npy", Tensor::empty({0, 512}));
  EXPECT_EQ(read_npy(dir / "e.npy").shape(), (Shape{0, 512}));
}

TEST(Npy, ReadsFloat64AndVersion2Headers) {
  ScratchDir dir;
  // Written by hand as numpy would: version 2.0 (4-byte header length), '<f8', shape (2, 3).
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
  header.append(64 - (12 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string file("\x93NUMPY\x02\x00", 8);
  const uint32_t length = uint32_t(header.size());
  file.append(reinterpret_cast<const char*>(&length), 4);
  file += header;
  const double values[6] = {1.5, -2.0, 3.25, 0.0, 1e-3, 7.0};
  file.append(reinterpret_cast<const char*>(values), sizeof values);
  dir.write("d.npy", file);
  const Tensor m = read_npy(dir / "d.npy");
  ASSERT_EQ(m.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(m.data<float>()[i], float(values[i]));
}

TEST(Npy, CorruptFilesGiveClearErrors) {
  ScratchDir dir;
  write_npy(dir / "m.npy", testing::random_tensor({4, 3}, 1));
  const std::string good = read_bytes(dir / "m.npy");
  auto message_for = [&](const std::string& content) -> std::string {
    dir.write("bad.npy", content);
    try {
      read_npy(dir / "bad.npy");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message_for("hello").find("no NUMPY magic"), std::string::npos);
  EXPECT_NE(message_for(good.substr(0, good.size() - 1)).find("expected 48 data bytes"), std::string::npos);
  std::string wrong_type = good;
  wrong_type.replace(wrong_type.find("<f4"), 3, "<i4");
  EXPECT_NE(message_for(wrong_type).find("element type '<i4'"), std::string::npos);
  std::string three_d = good;
  three_d.replace(three_d.find("(4, 3)"), 6, "(4,3,1)");
  EXPECT_NE(message_for(three_d).find("3 dimensions"), std::string::npos);
  // A shape whose byte count wraps around to the file's 48 bytes (2^60 + 3 rows of 4 floats): refused,
  // not allocated. The header's space padding absorbs the longer text, so the data stays in place.
  std::string wrapped = good;
  const std::string huge = "(1152921504606846979, 4)";
  wrapped.replace(wrapped.find("(4, 3)"), 6, huge);
  wrapped.erase(wrapped.find("\n") - (huge.size() - 6), huge.size() - 6);
  ASSERT_EQ(wrapped.size(), good.size());
  EXPECT_NE(message_for(wrapped).find("is larger than any file"), std::string::npos) << message_for(wrapped);
  // Every truncation is an error, never a crash.
  for (size_t n = 0; n < good.size(); ++n) EXPECT_NE(message_for(good.substr(0, n)), "") << n;
}

TEST(Npy, EmbeddingsWithTheirImageList) {
  ScratchDir dir;
  Embeddings e{testing::random_tensor({3, 4}, 2), {"A/a.jpg", "B/b.jpg", "C/c.jpg"}};
  write_embeddings(dir / "emb.npy", e);
  EXPECT_EQ(read_bytes(dir / "emb.txt"), "A/a.jpg\nB/b.jpg\nC/c.jpg\n");
  const Embeddings back = read_embeddings(dir / "emb.npy");
  EXPECT_EQ(back.paths, e.paths);
  EXPECT_EQ(std::memcmp(back.matrix.raw(), e.matrix.raw(), e.matrix.bytes()), 0);

  dir.write("short.txt", "A/a.jpg\nB/b.jpg\n");
  try {
    read_embeddings(dir / "emb.npy", dir / "short.txt");
    FAIL() << "a list with too few lines must be rejected";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("lists 2 images but"), std::string::npos) << error.what();
  }
  EXPECT_THROW(read_embeddings(dir / "emb.npy", dir / "absent.txt"), Error);
}

TEST(Npy, NumpyLoadsWhatWeWrite) {
  if (std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  ScratchDir dir;
  const Tensor m = testing::random_tensor({9, 6}, 3);
  write_npy(dir / "m.npy", m);
  {
    std::ofstream raw(dir / "m.raw", std::ios::binary);
    raw.write(static_cast<const char*>(m.raw()), std::streamsize(m.bytes()));
  }
  const std::string check = "/usr/bin/python3 -c \"import numpy as np, sys; a = np.load(sys.argv[1]); "
                            "b = np.fromfile(sys.argv[2], '<f4').reshape(9, 6); "
                            "sys.exit(0 if a.dtype == np.float32 and np.array_equal(a, b) else 1)\" " +
                            (dir / "m.npy").string() + " " + (dir / "m.raw").string();
  EXPECT_EQ(std::system(check.c_str()), 0) << "numpy.load disagrees with the bytes written";
}

}  // namespace
}  // namespace cuface::eval
