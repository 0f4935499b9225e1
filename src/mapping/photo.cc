#include "mapping/photo.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <string_view>
#include <vector>

// jpeglib.h wants size_t and FILE declared before it.
#include <jerror.h>
#include <jpeglib.h>

#include "core/text.h"

namespace roster {
namespace {

constexpr int kMaxScans = 256;                          // real progressive JPEGs have about ten
constexpr long kMaxDecoderMemory = 256L * 1024 * 1024;  // coefficient buffers of a progressive JPEG
constexpr int kQualities[] = {85, 75, 65, 50};
constexpr int kMinSide = 16;  // smaller than this is not a photo worth sending

struct Image {
  int width = 0, height = 0, components = 0;  // 1 (grey), 3 (RGB) or 4 (CMYK, before conversion)
  std::vector<unsigned char> pixels;          // rows top to bottom, no padding
};

// libjpeg reports fatal errors through error_exit, which must not return (the
// default calls exit()). Ours jumps back to the setjmp in the function that
// drives libjpeg. Everything that function touches after setjmp lives in the
// caller's frame, so nothing is left indeterminate or undestroyed by the jump.
struct ErrorManager {
  jpeg_error_mgr pub;  // first, so that libjpeg's pointer converts back
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool too_many_scans;
  bool over_size;
};

[[noreturn]] void OnError(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings mean damaged data that libjpeg would paper over with grey; a
// half-grey face is worse than none. These few say nothing about the pixels.
bool IsHarmlessWarning(int code) {
  return code == JWRN_EXTRANEOUS_DATA || code == JWRN_ADOBE_XFORM || code == JWRN_JFIF_MAJOR ||
         code == JWRN_BOGUS_ICC;
}

void OnMessage(j_common_ptr cinfo, int level) {
  if (level < 0 && !IsHarmlessWarning(cinfo->err->msg_code)) OnError(cinfo);
}

void OnOutput(j_common_ptr) {}  // a library must not write to stderr

// A progressive JPEG may hold thousands of tiny scans, each a full pass over
// the coefficients: a few kilobytes that take minutes to decode.
void OnProgress(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) return;
  if (reinterpret_cast<j_decompress_ptr>(cinfo)->input_scan_number > kMaxScans) {
    auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    err->too_many_scans = true;
    std::longjmp(err->jump, 1);
  }
}

void InstallErrorManager(ErrorManager& err) {
  jpeg_std_error(&err.pub);
  err.pub.error_exit = OnError;
  err.pub.emit_message = OnMessage;
  err.pub.output_message = OnOutput;
}

// EXIF orientation (1..8) from an APP1 marker; 1 when absent or unreadable.
int ExifOrientation(jpeg_saved_marker_ptr markers) {
  for (jpeg_saved_marker_ptr m = markers; m != nullptr; m = m->next) {
    if (m->marker != JPEG_APP0 + 1 || m->data_length < 6 + 8) continue;
    const std::string_view head(reinterpret_cast<const char*>(m->data), 6);
    if (head != std::string_view("Exif\0\0", 6)) continue;
    const unsigned char* tiff = m->data + 6;
    const size_t size = m->data_length - 6;
    bool little;
    if (tiff[0] == 'I' && tiff[1] == 'I') {
      little = true;
    } else if (tiff[0] == 'M' && tiff[1] == 'M') {
      little = false;
    } else {
      return 1;
    }
    auto u16 = [&](size_t at) -> unsigned {
      return little ? tiff[at] | tiff[at + 1] << 8 : tiff[at] << 8 | tiff[at + 1];
    };
    auto u32 = [&](size_t at) -> size_t {
      return little ? size_t{u16(at)} | size_t{u16(at + 2)} << 16
                    : size_t{u16(at)} << 16 | size_t{u16(at + 2)};
    };
    if (u16(2) != 42) return 1;
    const size_t ifd = u32(4);
    if (ifd > size || size - ifd < 2) return 1;
    const size_t count = u16(ifd);
    for (size_t k = 0; k < count; ++k) {
      const size_t entry = ifd + 2 + 12 * k;
      if (entry > size || size - entry < 12) return 1;
      if (u16(entry) == 0x0112 && u16(entry + 2) == 3) {  // Orientation, SHORT
        const unsigned value = u16(entry + 8);
        return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
      }
    }
    return 1;
  }
  return 1;
}

struct JpegHeader {
  int width = 0, height = 0;
  int orientation = 1;
  bool adobe = false;    // saw an Adobe marker: CMYK is stored inverted
  bool refused = false;  // dimensions roster will not decode
};

struct Decoder {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  jpeg_progress_mgr progress;
};

// Reads the header, and with `target` > 0 the image too, scaled by the
// smallest DCT factor (1/1 .. 1/8) that keeps its longer side at least
// `target`. False when the JPEG does not decode or `header->refused`.
bool DecodeJpeg(Decoder* d, std::string_view data, int target, JpegHeader* header, Image* out) {
  jpeg_decompress_struct* cinfo = &d->cinfo;
  cinfo->err = &d->err.pub;
  InstallErrorManager(d->err);
  if (setjmp(d->err.jump) != 0) {
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  jpeg_create_decompress(cinfo);
  cinfo->mem->max_memory_to_use = kMaxDecoderMemory;
  d->progress.progress_monitor = OnProgress;
  cinfo->progress = &d->progress;
  jpeg_mem_src(cinfo, reinterpret_cast<const unsigned char*>(data.data()),
               static_cast<unsigned long>(data.size()));
  jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(cinfo, TRUE);
  header->width = static_cast<int>(std::min<JDIMENSION>(cinfo->image_width, 1u << 30));
  header->height = static_cast<int>(std::min<JDIMENSION>(cinfo->image_height, 1u << 30));
  header->orientation = ExifOrientation(cinfo->marker_list);
  header->adobe = cinfo->saw_Adobe_marker;
  if (header->width <= 0 || header->height <= 0 || header->width > kMaxPhotoSide ||
      header->height > kMaxPhotoSide || int64_t{header->width} * header->height > kMaxPhotoPixels) {
    header->refused = true;
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  if (target <= 0) {
    jpeg_destroy_decompress(cinfo);
    return true;
  }
  const int longer = std::max(header->width, header->height);
  unsigned denom = 1;
  while (denom < 8 &&
         (longer + 2 * static_cast<int>(denom) - 1) / (2 * static_cast<int>(denom)) >= target) {
    denom *= 2;
  }
  cinfo->scale_num = 1;
  cinfo->scale_denom = denom;
  cinfo->dct_method = JDCT_ISLOW;
  switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
      cinfo->out_color_space = JCS_GRAYSCALE;
      break;
    case JCS_CMYK:
    case JCS_YCCK:
      cinfo->out_color_space = JCS_CMYK;
      break;
    default:
      cinfo->out_color_space = JCS_RGB;
      break;
  }
  jpeg_start_decompress(cinfo);
  out->width = static_cast<int>(cinfo->output_width);
  out->height = static_cast<int>(cinfo->output_height);
  out->components = cinfo->output_components;
  out->pixels.resize(size_t{cinfo->output_width} * cinfo->output_height *
                     static_cast<size_t>(cinfo->output_components));
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = out->pixels.data() + size_t{cinfo->output_scanline} * cinfo->output_width *
                                            static_cast<size_t>(cinfo->output_components);
    if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
      jpeg_destroy_decompress(cinfo);
      return false;
    }
  }
  // Every row is in; a missing EOI marker after them does not matter, so
  // there is no jpeg_finish_decompress to complain about it.
  jpeg_destroy_decompress(cinfo);
  return true;
}

// Appends the compressed bytes to a string, and gives up as soon as they pass
// `limit`: no point finishing an encoding that is already too big.
struct Destination {
  jpeg_destination_mgr pub;  // first
  std::string* out;
  size_t limit;
  JOCTET chunk[16384];
};

void InitDestination(j_compress_ptr cinfo) {
  auto* dest = reinterpret_cast<Destination*>(cinfo->dest);
  dest->pub.next_output_byte = dest->chunk;
  dest->pub.free_in_buffer = sizeof dest->chunk;
}

boolean EmptyDestination(j_compress_ptr cinfo) {
  auto* dest = reinterpret_cast<Destination*>(cinfo->dest);
  dest->out->append(reinterpret_cast<const char*>(dest->chunk), sizeof dest->chunk);
  if (dest->out->size() > dest->limit) {
    auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
    err->over_size = true;
    std::longjmp(err->jump, 1);
  }
  InitDestination(cinfo);
  return TRUE;
}

void TermDestination(j_compress_ptr cinfo) {
  auto* dest = reinterpret_cast<Destination*>(cinfo->dest);
  dest->out->append(reinterpret_cast<const char*>(dest->chunk),
                    sizeof dest->chunk - dest->pub.free_in_buffer);
}

struct Encoder {
  jpeg_compress_struct cinfo;
  ErrorManager err;
  Destination dest;
};

// Baseline JPEG with optimised Huffman tables: every decoder reads it, and
// libjpeg's output depends only on the pixels and settings.
bool EncodeJpeg(Encoder* e, const Image& image, int quality, size_t limit, std::string* out) {
  jpeg_compress_struct* cinfo = &e->cinfo;
  cinfo->err = &e->err.pub;
  InstallErrorManager(e->err);
  e->dest.pub.init_destination = InitDestination;
  e->dest.pub.empty_output_buffer = EmptyDestination;
  e->dest.pub.term_destination = TermDestination;
  e->dest.out = out;
  e->dest.limit = limit;
  if (setjmp(e->err.jump) != 0) {
    jpeg_destroy_compress(cinfo);
    return false;
  }
  jpeg_create_compress(cinfo);
  cinfo->dest = &e->dest.pub;
  cinfo->image_width = static_cast<JDIMENSION>(image.width);
  cinfo->image_height = static_cast<JDIMENSION>(image.height);
  cinfo->input_components = image.components;
  cinfo->in_color_space = image.components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(cinfo);
  jpeg_set_quality(cinfo, quality, TRUE);
  cinfo->optimize_coding = TRUE;
  cinfo->dct_method = JDCT_ISLOW;
  jpeg_start_compress(cinfo, TRUE);
  while (cinfo->next_scanline < cinfo->image_height) {
    // libjpeg's API takes non-const rows but only reads them.
    JSAMPROW row = const_cast<unsigned char*>(image.pixels.data()) +
                   size_t{cinfo->next_scanline} * static_cast<size_t>(image.width) *
                       static_cast<size_t>(image.components);
    jpeg_write_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_compress(cinfo);
  jpeg_destroy_compress(cinfo);
  return true;
}

// CMYK (Adobe's inverted form when `adobe`) to RGB, the naive way: no colour
// management, enough for a face on a phone.
void CmykToRgb(Image& image, bool adobe) {
  std::vector<unsigned char> rgb(size_t{static_cast<size_t>(image.width)} *
                                 static_cast<size_t>(image.height) * 3);
  for (size_t p = 0, n = rgb.size() / 3; p < n; ++p) {
    const unsigned char* s = &image.pixels[p * 4];
    const unsigned k = adobe ? s[3] : 255u - s[3];
    for (int c = 0; c < 3; ++c) {
      const unsigned v = adobe ? s[c] : 255u - s[c];
      rgb[p * 3 + static_cast<size_t>(c)] = static_cast<unsigned char>((v * k + 127) / 255);
    }
  }
  image.pixels = std::move(rgb);
  image.components = 3;
}

// Turns the pixels the way EXIF orientation says a viewer should show them:
// the re-encoded photo carries no EXIF, so it must already be upright.
void Orient(Image& image, int orientation) {
  if (orientation <= 1 || orientation > 8) return;
  const size_t w = static_cast<size_t>(image.width), h = static_cast<size_t>(image.height);
  const size_t comps = static_cast<size_t>(image.components);
  // The eight orientations are the combinations of three moves: 5-8 swap
  // the axes, then 2, 3, 7 and 8 mirror the stored image left to right and
  // 3, 4, 6 and 7 top to bottom.
  const bool swap = orientation >= 5;
  const bool mirror_x =
      orientation == 2 || orientation == 3 || orientation == 7 || orientation == 8;
  const bool mirror_y =
      orientation == 3 || orientation == 4 || orientation == 6 || orientation == 7;
  const size_t ow = swap ? h : w, oh = swap ? w : h;
  std::vector<unsigned char> out(image.pixels.size());
  for (size_t oy = 0; oy < oh; ++oy) {
    for (size_t ox = 0; ox < ow; ++ox) {
      size_t sx = swap ? oy : ox, sy = swap ? ox : oy;
      if (mirror_x) sx = w - 1 - sx;
      if (mirror_y) sy = h - 1 - sy;
      std::copy_n(&image.pixels[(sy * w + sx) * comps], comps, &out[(oy * ow + ox) * comps]);
    }
  }
  image.pixels = std::move(out);
  image.width = static_cast<int>(ow);
  image.height = static_cast<int>(oh);
}

// Averages `in` samples (`in_step` apart) into `out` samples (`out_step`
// apart), each the mean of the inputs it covers weighted by overlap. Integer
// arithmetic throughout, so the result is the same on every machine.
void ResampleLine(const unsigned char* src, size_t in_step, int in, unsigned char* dst,
                  size_t out_step, int out) {
  const int64_t n = in, m = out;
  for (int64_t o = 0; o < m; ++o) {
    const int64_t lo = o * n, hi = (o + 1) * n;  // in 1/out-ths of a source sample
    int64_t sum = 0;
    for (int64_t i = lo / m; i * m < hi; ++i) {
      sum +=
          (std::min((i + 1) * m, hi) - std::max(i * m, lo)) * src[static_cast<size_t>(i) * in_step];
    }
    dst[static_cast<size_t>(o) * out_step] = static_cast<unsigned char>((sum + n / 2) / n);
  }
}

// The image shrunk so that its longer side is `side` (aspect kept), or
// unchanged when it already fits.
Image Shrink(const Image& image, int side) {
  const int longer = std::max(image.width, image.height);
  if (longer <= side) return image;
  const int tw = std::max(1, static_cast<int>((int64_t{image.width} * side + longer / 2) / longer));
  const int th =
      std::max(1, static_cast<int>((int64_t{image.height} * side + longer / 2) / longer));
  const size_t comps = static_cast<size_t>(image.components);
  std::vector<unsigned char> wide(static_cast<size_t>(tw) * static_cast<size_t>(image.height) *
                                  comps);
  for (size_t y = 0; y < static_cast<size_t>(image.height); ++y) {
    for (size_t c = 0; c < comps; ++c) {
      ResampleLine(&image.pixels[y * static_cast<size_t>(image.width) * comps + c], comps,
                   image.width, &wide[y * static_cast<size_t>(tw) * comps + c], comps, tw);
    }
  }
  Image out;
  out.width = tw;
  out.height = th;
  out.components = image.components;
  out.pixels.resize(static_cast<size_t>(tw) * static_cast<size_t>(th) * comps);
  const size_t row = static_cast<size_t>(tw) * comps;
  for (size_t x = 0; x < static_cast<size_t>(tw); ++x) {
    for (size_t c = 0; c < comps; ++c) {
      ResampleLine(&wide[x * comps + c], row, image.height, &out.pixels[x * comps + c], row, th);
    }
  }
  return out;
}

bool IsJpeg(std::string_view data) {
  return data.size() >= 3 && static_cast<unsigned char>(data[0]) == 0xFF &&
         static_cast<unsigned char>(data[1]) == 0xD8 && static_cast<unsigned char>(data[2]) == 0xFF;
}

std::string Size(size_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  return std::to_string((bytes + 1023) / 1024) + " KB";
}

std::string Dimensions(int width, int height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

CappedPhoto Dropped(std::string reason) {
  return CappedPhoto{CappedPhoto::Outcome::kDropped, std::nullopt, std::move(reason)};
}

std::string DecodeFailure(const Decoder& d, const JpegHeader& header) {
  if (header.refused) {
    return "the JPEG claims " + Dimensions(header.width, header.height) +
           " pixels, more than roster decodes";
  }
  if (d.err.too_many_scans) {
    return "the JPEG has more than " + std::to_string(kMaxScans) + " scans";
  }
  std::string why = d.err.message;
  return "the JPEG is damaged and does not decode" + (why.empty() ? "" : " (" + why + ")");
}

}  // namespace

CappedPhoto CapPhoto(const Photo& photo, size_t max_bytes, int max_pixels) {
  if (max_pixels <= 0) return Dropped("photos are turned off");
  if (photo.data.empty()) return CappedPhoto{CappedPhoto::Outcome::kKept, photo, ""};
  if (!IsJpeg(photo.data)) {
    if (photo.data.size() <= max_bytes) return CappedPhoto{CappedPhoto::Outcome::kKept, photo, ""};
    std::string type = text::NormalizeMediaType(photo.media_type);
    return Dropped("a " + Size(photo.data.size()) + " " + (type.empty() ? "untyped" : type) +
                   " photo is over the " + Size(max_bytes) +
                   " limit, and only JPEG can be made smaller");
  }

  // Even within the byte limit, a JPEG must at least have a readable header
  // of sane dimensions: a few bytes can claim a picture no phone can hold.
  JpegHeader header;
  {
    Decoder d{};
    if (!DecodeJpeg(&d, photo.data, 0, &header, nullptr)) return Dropped(DecodeFailure(d, header));
  }
  if (photo.data.size() <= max_bytes && std::max(header.width, header.height) <= max_pixels) {
    return CappedPhoto{CappedPhoto::Outcome::kKept, photo, ""};
  }

  Image image;
  {
    Decoder d{};
    if (!DecodeJpeg(&d, photo.data, max_pixels, &header, &image)) {
      return Dropped(DecodeFailure(d, header));
    }
  }
  if (image.components == 4) CmykToRgb(image, header.adobe);
  Orient(image, header.orientation);

  Image small;
  for (int side = std::min(max_pixels, std::max(image.width, image.height));; side /= 2) {
    small = Shrink(image, side);
    for (int quality : kQualities) {
      std::string out;
      Encoder e{};
      if (!EncodeJpeg(&e, small, quality, max_bytes, &out) || out.size() > max_bytes) continue;
      Photo result = photo;
      result.media_type = "image/jpeg";
      result.data = std::move(out);
      std::string reason = "resized from " + Dimensions(header.width, header.height) + " (" +
                           Size(photo.data.size()) + ") to " +
                           Dimensions(small.width, small.height) + " (" + Size(result.data.size()) +
                           ")";
      return CappedPhoto{CappedPhoto::Outcome::kResampled, std::move(result), std::move(reason)};
    }
    if (side / 2 < kMinSide) break;
  }
  return Dropped("the JPEG does not fit in " + Size(max_bytes) + " even at " +
                 Dimensions(small.width, small.height) + " pixels");
}

}  // namespace roster
