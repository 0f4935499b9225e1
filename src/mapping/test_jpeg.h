// Test helpers: real JPEGs made with libjpeg's compressor, and a decoder to
// look at what CapPhoto wrote. Test-only; aborts on libjpeg errors.
#pragma once

#include <jpeglib.h>

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace roster::test_jpeg {

struct JpegSpec {
  int width = 64, height = 48;
  int quality = 90;
  J_COLOR_SPACE color = JCS_RGB;  // JCS_RGB, JCS_GRAYSCALE or JCS_CMYK
  bool progressive = false;
  int orientation = 0;  // EXIF orientation to write; 0: no EXIF
  // Writes one pixel (1, 3 or 4 samples); default: a gradient with noise,
  // which compresses badly enough to make big files.
  std::function<void(int x, int y, unsigned char* px)> fill;
  std::vector<jpeg_scan_info> scans;  // a custom progressive scan script
};

inline void DefaultFill(int x, int y, int width, int height, int components, unsigned char* px) {
  const unsigned noise =
      (static_cast<unsigned>(x) * 73856093u ^ static_cast<unsigned>(y) * 19349663u) >> 7 & 63u;
  for (int c = 0; c < components; ++c) {
    const unsigned base = c == 0 ? 200u * static_cast<unsigned>(x) / static_cast<unsigned>(width)
                                 : 200u * static_cast<unsigned>(y) / static_cast<unsigned>(height);
    px[c] = static_cast<unsigned char>(base + noise - static_cast<unsigned>(c) * 7u % 32u);
  }
}

// An APP1 "Exif" marker holding only an Orientation tag (little-endian TIFF).
inline std::string ExifWithOrientation(int orientation) {
  std::string m("Exif\0\0", 6);
  const unsigned char tiff[] = {'I',
                                'I',
                                42,
                                0,
                                8,
                                0,
                                0,
                                0,  // header, IFD at 8
                                1,
                                0,  // one entry
                                0x12,
                                0x01,
                                3,
                                0,
                                1,
                                0,
                                0,
                                0,  // 0x0112 SHORT x1
                                static_cast<unsigned char>(orientation),
                                0,
                                0,
                                0,  // value
                                0,
                                0,
                                0,
                                0};  // no next IFD
  m.append(reinterpret_cast<const char*>(tiff), sizeof tiff);
  return m;
}

inline std::string MakeJpeg(const JpegSpec& spec) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  const int components = spec.color == JCS_GRAYSCALE ? 1 : spec.color == JCS_CMYK ? 4 : 3;
  cinfo.image_width = static_cast<JDIMENSION>(spec.width);
  cinfo.image_height = static_cast<JDIMENSION>(spec.height);
  cinfo.input_components = components;
  cinfo.in_color_space = spec.color;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, spec.quality, TRUE);
  if (spec.progressive) jpeg_simple_progression(&cinfo);
  if (!spec.scans.empty()) {
    cinfo.scan_info = spec.scans.data();
    cinfo.num_scans = static_cast<int>(spec.scans.size());
  }
  jpeg_start_compress(&cinfo, TRUE);
  if (spec.orientation > 0) {
    const std::string exif = ExifWithOrientation(spec.orientation);
    jpeg_write_marker(&cinfo, JPEG_APP0 + 1, reinterpret_cast<const JOCTET*>(exif.data()),
                      static_cast<unsigned>(exif.size()));
  }
  std::vector<unsigned char> row(static_cast<size_t>(spec.width) * components);
  while (cinfo.next_scanline < cinfo.image_height) {
    const int y = static_cast<int>(cinfo.next_scanline);
    for (int x = 0; x < spec.width; ++x) {
      unsigned char* px = &row[static_cast<size_t>(x) * components];
      if (spec.fill) {
        spec.fill(x, y, px);
      } else {
        DefaultFill(x, y, spec.width, spec.height, components, px);
      }
    }
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::string out(reinterpret_cast<const char*>(buffer), size);
  free(buffer);
  return out;
}

struct Decoded {
  int width = 0, height = 0, components = 0;
  std::vector<unsigned char> pixels;
  const unsigned char* at(int x, int y) const {
    return &pixels[(static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) *
                   static_cast<size_t>(components)];
  }
};

inline Decoded DecodeJpegForTest(std::string_view data) {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(data.data()),
               static_cast<unsigned long>(data.size()));
  jpeg_read_header(&cinfo, TRUE);
  jpeg_start_decompress(&cinfo);
  Decoded d;
  d.width = static_cast<int>(cinfo.output_width);
  d.height = static_cast<int>(cinfo.output_height);
  d.components = cinfo.output_components;
  d.pixels.resize(static_cast<size_t>(d.width) * d.height * d.components);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW r = &d.pixels[static_cast<size_t>(cinfo.output_scanline) * d.width * d.components];
    jpeg_read_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return d;
}

}  // namespace roster::test_jpeg
