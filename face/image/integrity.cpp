// Both libraries report errors through a callback that must not return: it longjmps back to the
// setjmp in the checking function. Nothing with a destructor is created between the two, and what
// the failure path needs (the message, the row buffer) lives in memory the callbacks write.
#include "face/image/integrity.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

namespace cuface {

namespace {

StreamCheck refused(const char* why) {
  StreamCheck result;
  result.error = why;
  return result;
}

StreamCheck sized(int width, int height, int64_t max_pixels) {
  StreamCheck result;
  result.width = width;
  result.height = height;
  result.too_large = int64_t(width) * height > max_pixels;
  result.intact = !result.too_large;
  return result;
}

// ---- JPEG (libjpeg-turbo) --------------------------------------------------------------------------

constexpr int kMaxJpegScans = 1000;  // a progressive JPEG has about 10; each scan revisits every block

struct JpegErrors {
  jpeg_error_mgr manager;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

// Warnings (level -1) are libjpeg's corrupt-data reports: failures here, except the two that say
// nothing about the pixels. Trace messages (level >= 0) are ignored.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;
  const int code = cinfo->err->msg_code;
  if (code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM) return;
  jpeg_fail(cinfo);
}

void jpeg_limit_scans(j_common_ptr cinfo) {
  const auto* decoder = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (decoder->input_scan_number <= kMaxJpegScans) return;
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  std::snprintf(errors->message, sizeof errors->message, "more than %d progressive scans", kMaxJpegScans);
  std::longjmp(errors->jump, 1);
}

// ---- PNG (libpng) ----------------------------------------------------------------------------------

struct PngInput {
  const uint8_t* bytes;
  size_t size, offset;
  char message[160];
};

void png_read_bytes(png_structp png, png_bytep out, size_t count) {
  auto* input = static_cast<PngInput*>(png_get_io_ptr(png));
  if (count > input->size - input->offset) png_error(png, "file ends early (truncated)");
  std::memcpy(out, input->bytes + input->offset, count);
  input->offset += count;
}

[[noreturn]] void png_fail(png_structp png, png_const_charp message) {
  auto* input = static_cast<PngInput*>(png_get_error_ptr(png));
  std::snprintf(input->message, sizeof input->message, "%s", message);
  png_longjmp(png, 1);
}

// Warnings are about metadata (an odd ICC profile, a chunk out of place), not the pixels.
void png_ignore_warning(png_structp, png_const_charp) {}

}  // namespace

StreamCheck check_jpeg_stream(const uint8_t* bytes, size_t size, int64_t max_pixels) {
  jpeg_decompress_struct cinfo;
  std::memset(&cinfo, 0, sizeof cinfo);
  JpegErrors errors;
  std::memset(errors.message, 0, sizeof errors.message);
  cinfo.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_fail;
  errors.manager.emit_message = jpeg_message;
  jpeg_progress_mgr progress{};
  progress.progress_monitor = jpeg_limit_scans;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return refused(errors.message);
  }
  jpeg_create_decompress(&cinfo);
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const StreamCheck result = sized(int(cinfo.image_width), int(cinfo.image_height), max_pixels);
  if (result.too_large) {
    jpeg_destroy_decompress(&cinfo);
    return result;
  }
  // Every entropy-coded bit is still read at 1/8 scale; only the inverse DCT and colour work shrink.
  cinfo.scale_num = 1;
  cinfo.scale_denom = 8;
  cinfo.dct_method = JDCT_IFAST;
  cinfo.do_fancy_upsampling = FALSE;
  cinfo.do_block_smoothing = FALSE;
  if (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_GRAYSCALE)
    cinfo.out_color_space = JCS_GRAYSCALE;
  jpeg_start_decompress(&cinfo);
  JSAMPARRAY row = (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                              cinfo.output_width * JDIMENSION(cinfo.output_components), 1);
  while (cinfo.output_scanline < cinfo.output_height) jpeg_read_scanlines(&cinfo, row, 1);
  jpeg_finish_decompress(&cinfo);  // reads on to EOI: a missing one is "premature end of JPEG file"
  jpeg_destroy_decompress(&cinfo);
  return result;
}

StreamCheck check_png_stream(const uint8_t* bytes, size_t size, int64_t max_pixels) {
  PngInput input{bytes, size, 0, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &input, png_fail, png_ignore_warning);
  if (!png) return refused("out of memory");
  png_infop info = png_create_info_struct(png);
  png_bytep volatile row = nullptr;
  if (!info || setjmp(png_jmpbuf(png))) {
    const StreamCheck result = refused(info ? input.message : "out of memory");
    if (row) png_free(png, row);
    png_destroy_read_struct(&png, &info, nullptr);
    return result;
  }
  png_set_read_fn(png, &input, png_read_bytes);
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);  // ancillary chunks too
  png_read_info(png, info);
  const StreamCheck result =
      sized(int(png_get_image_width(png, info)), int(png_get_image_height(png, info)), max_pixels);
  if (result.too_large) {
    png_destroy_read_struct(&png, &info, nullptr);
    return result;
  }
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  row = static_cast<png_bytep>(png_malloc(png, png_get_rowbytes(png, info)));
  for (int pass = 0; pass < passes; ++pass)
    for (png_uint_32 y = 0; y < png_get_image_height(png, info); ++y) png_read_row(png, row, nullptr);
  png_read_end(png, nullptr);  // the chunks after the image data up to IEND, each CRC checked
  png_free(png, row);
  png_destroy_read_struct(&png, &info, nullptr);
  return result;
}

}  // namespace cuface
