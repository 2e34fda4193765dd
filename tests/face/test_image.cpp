// Image decoding and encoding: every format of the shared data, progressive JPEG, round trips.
#include <gtest/gtest.h>

#include <cmath>

#include "data.h"
#include "face/image/image.h"

namespace cuface {
namespace {

using testing::fixture_path;
using testing::shared_data;

Image decode_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  Image image;
  std::string error;
  EXPECT_TRUE(decode_image(bytes.data(), bytes.size(), image, error)) << path << ": " << error;
  return image;
}

bool is_grey(const Image& image) {
  for (size_t i = 0; i < image.pixels.size(); i += 3)
    if (image.pixels[i] != image.pixels[i + 1] || image.pixels[i] != image.pixels[i + 2]) return false;
  return true;
}

double psnr(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double squared = 0;
  for (size_t i = 0; i < a.size(); ++i) squared += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return 10 * std::log10(255.0 * 255.0 / (squared / double(a.size())));
}

TEST(Decode, LfwGreyscaleJpegBecomesThreeEqualChannels) {
  CUFACE_REQUIRE_SHARED_DATA("lfw");
  const Image image = decode_file(shared_data("lfw/images/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"));
  EXPECT_EQ(image.width, 250);
  EXPECT_EQ(image.height, 250);
  EXPECT_EQ(image.channels, 3);
  EXPECT_TRUE(is_grey(image));
}

TEST(Decode, UtkfaceColourJpeg) {
  CUFACE_REQUIRE_SHARED_DATA("utkface");
  const Image image = decode_file(shared_data("utkface/100_0_0_20170112213500903.jpg.chip.jpg"));
  EXPECT_EQ(image.width, 200);
  EXPECT_EQ(image.height, 200);
  EXPECT_FALSE(is_grey(image));
}

TEST(Decode, OrlPgm) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  const Image image = decode_file(shared_data("orl/s1/1.pgm"));
  EXPECT_EQ(image.width, 92);
  EXPECT_EQ(image.height, 112);
  EXPECT_TRUE(is_grey(image));
  // P5 stores the pixels after the header verbatim: compare with the file's last bytes.
  const std::vector<uint8_t> bytes = read_file(shared_data("orl/s1/1.pgm"));
  const size_t start = bytes.size() - 92 * 112;
  for (int i = 0; i < 92 * 112; i += 97) EXPECT_EQ(image.pixels[size_t(i) * 3], bytes[start + size_t(i)]);
}

TEST(Decode, YaleGifWithoutExtension) {
  CUFACE_REQUIRE_SHARED_DATA("yale");
  const Image image = decode_file(shared_data("yale/subject01.happy"));
  EXPECT_EQ(image.width, 320);
  EXPECT_EQ(image.height, 243);
}

TEST(Decode, ProgressiveJpegGivesTheBaselinePixels) {
  // jpegtran rewrote the baseline file's DCT coefficients losslessly as a progressive scan script.
  const Image baseline = decode_file(fixture_path("image/synthetic_baseline.jpg"));
  const Image progressive = decode_file(fixture_path("image/synthetic_progressive.jpg"));
  ASSERT_EQ(baseline.width, 72);
  ASSERT_EQ(progressive.height, 56);
  const Image original = decode_file(fixture_path("image/synthetic.ppm"));
  EXPECT_GT(psnr(progressive.pixels, original.pixels), 28.0);  // a faithful decode of the source
  EXPECT_EQ(progressive.pixels, baseline.pixels);               // the same coefficients, the same pixels
}

TEST(Decode, RejectsNonImagesWithAReason) {
  Image image;
  std::string error;
  EXPECT_FALSE(decode_image(nullptr, 0, image, error));
  EXPECT_EQ(error, "empty file");
  const std::string text = "this is a README, not an image";
  EXPECT_FALSE(decode_image(reinterpret_cast<const uint8_t*>(text.data()), text.size(), image, error));
  EXPECT_NE(error.find("not a decodable image"), std::string::npos) << error;
  std::vector<uint8_t> jpeg = read_file(fixture_path("image/synthetic_baseline.jpg"));
  jpeg.resize(20);  // header cut before the frame
  EXPECT_FALSE(decode_image(jpeg.data(), jpeg.size(), image, error));
  EXPECT_FALSE(error.empty());
}

// Regressions for stb_image 2.27 (Debian 12) memory errors found by the fuzz test under ASan.
TEST(Decode, SixteenBitPgmIsRefusedNotMisread) {
  // stb 2.27 reads 16-bit PNM samples in the wrong byte order (and its RGB conversion of them
  // overflows its buffer): refused with a reason. 8-bit PGM (ORL) is unaffected.
  std::string pgm = "P5\n# comment\n3 2\n65535\n";
  for (int i = 0; i < 6; ++i) pgm += {char(0x12), char(0x34)};
  Image image;
  std::string error;
  EXPECT_FALSE(decode_image(reinterpret_cast<const uint8_t*>(pgm.data()), pgm.size(), image, error));
  EXPECT_EQ(error, "16-bit PGM/PPM is not supported");
  std::string pgm8 = "P5 3 2 255\n";
  for (int i = 0; i < 6; ++i) pgm8 += char(40 * i);
  ASSERT_TRUE(decode_image(reinterpret_cast<const uint8_t*>(pgm8.data()), pgm8.size(), image, error)) << error;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(image.pixels[size_t(i) * 3 + 1], 40 * i);
}

TEST(Decode, HuffmanTableWithTooManyCodesIsRefused) {
  std::vector<uint8_t> jpeg = read_file(fixture_path("image/synthetic_baseline.jpg"));
  size_t dht = 0;
  while (dht + 1 < jpeg.size() && !(jpeg[dht] == 0xFF && jpeg[dht + 1] == 0xC4)) ++dht;
  ASSERT_LT(dht + 21, jpeg.size());
  for (int k = 0; k < 16; ++k) jpeg[dht + 5 + size_t(k)] = 0x20;  // 16 x 32 = 512 codes
  Image image;
  std::string error;
  EXPECT_FALSE(decode_image(jpeg.data(), jpeg.size(), image, error));
  EXPECT_NE(error.find("Huffman"), std::string::npos) << error;
}

// stb decodes what it can; the strict check (libjpeg-turbo, libpng) refuses damage stb lets through.
TEST(Decode, DamagedJpegAndPngAreRefusedWithAReason) {
  const std::vector<uint8_t> jpeg = read_file(fixture_path("image/synthetic_baseline.jpg"));
  Image image;
  std::string error;
  // Cut before the end (stb fills the missing blocks with grey).
  std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + std::ptrdiff_t(jpeg.size() * 3 / 4));
  EXPECT_FALSE(decode_image(cut.data(), cut.size(), image, error));
  EXPECT_EQ(error, "corrupt JPEG (Premature end of JPEG file)");
  // An EOI marker in the middle of the scan (stb ends the image there).
  std::vector<uint8_t> broken = jpeg;
  const size_t middle = broken.size() / 2;
  broken[middle] = 0xFF, broken[middle + 1] = 0xD9;
  EXPECT_FALSE(decode_image(broken.data(), broken.size(), image, error));
  EXPECT_NE(error.find("corrupt JPEG (Corrupt JPEG data"), std::string::npos) << error;

  const Image original = decode_file(fixture_path("image/synthetic.ppm"));
  const std::vector<uint8_t> png = encode_png(original);
  std::vector<uint8_t> flipped = png;
  flipped[png.size() / 2] ^= 1;  // in the image data: the chunk's CRC no longer matches
  EXPECT_FALSE(decode_image(flipped.data(), flipped.size(), image, error));
  EXPECT_EQ(error, "corrupt PNG (IDAT: CRC error)");
  std::vector<uint8_t> crc = png;
  crc[png.size() - 1] ^= 1;  // IEND's CRC, after every pixel
  EXPECT_FALSE(decode_image(crc.data(), crc.size(), image, error));
  EXPECT_EQ(error, "corrupt PNG (IEND: CRC error)");
  std::vector<uint8_t> short_png(png.begin(), png.end() - 6);
  EXPECT_FALSE(decode_image(short_png.data(), short_png.size(), image, error));
  EXPECT_EQ(error, "corrupt PNG (file ends early (truncated))");
  // The intact files decode to stb's pixels, as before the check.
  ASSERT_TRUE(decode_image(png.data(), png.size(), image, error)) << error;
  EXPECT_EQ(image.pixels, original.pixels);
}

TEST(Decode, ImagesAboveTheLimitAreTooLargeNotUnknown) {
  Image image;
  std::string error;
  const std::string pgm = "P5 9000 8000 255\n" + std::string(100, '\x7f');  // 72 megapixels
  EXPECT_FALSE(decode_image(reinterpret_cast<const uint8_t*>(pgm.data()), pgm.size(), image, error));
  EXPECT_EQ(error, "too large: 9000x8000 pixels (at most 64 megapixels are decoded)");
  const std::string wide = "P5 40000 40000 255\n" + std::string(100, '\x7f');  // beyond stb's own limits before
  EXPECT_FALSE(decode_image(reinterpret_cast<const uint8_t*>(wide.data()), wide.size(), image, error));
  EXPECT_EQ(error, "too large: 40000x40000 pixels (at most 64 megapixels are decoded)");
}

TEST(Encode, JpegRoundTripIsClose) {
  const Image original = decode_file(fixture_path("image/synthetic.ppm"));
  for (int quality : {75, 90, 95}) {
    const std::vector<uint8_t> jpeg = encode_jpeg(original, quality);
    Encoding encoding;
    ASSERT_TRUE(sniff_encoding(jpeg.data(), jpeg.size(), encoding));
    EXPECT_EQ(encoding, Encoding::Jpeg);
    Image decoded;
    std::string error;
    ASSERT_TRUE(decode_image(jpeg.data(), jpeg.size(), decoded, error)) << error;
    EXPECT_GT(psnr(decoded.pixels, original.pixels), 27.0) << "quality " << quality;
  }
}

TEST(Encode, PngRoundTripIsExact) {
  const Image original = decode_file(fixture_path("image/synthetic.ppm"));
  const std::vector<uint8_t> png = encode_png(original);
  Encoding encoding;
  ASSERT_TRUE(sniff_encoding(png.data(), png.size(), encoding));
  EXPECT_EQ(encoding, Encoding::Png);
  Image decoded;
  std::string error;
  ASSERT_TRUE(decode_image(png.data(), png.size(), decoded, error)) << error;
  EXPECT_EQ(decoded.pixels, original.pixels);
}

TEST(Encode, SniffKnowsOnlyJpegAndPng) {
  CUFACE_REQUIRE_SHARED_DATA("orl");
  const std::vector<uint8_t> pgm = read_file(shared_data("orl/s1/1.pgm"));
  Encoding encoding;
  EXPECT_FALSE(sniff_encoding(pgm.data(), pgm.size(), encoding));
}

}  // namespace
}  // namespace cuface
