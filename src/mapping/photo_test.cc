#include "mapping/photo.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "mapping/test_jpeg.h"

namespace roster {
namespace {

using test_jpeg::Decoded;
using test_jpeg::DecodeJpegForTest;
using test_jpeg::JpegSpec;
using test_jpeg::MakeJpeg;
using Outcome = CappedPhoto::Outcome;

Photo Jpeg(const std::string& data) { return Photo{"image/jpeg", data, ""}; }

// The big photo most tests shrink: 2000x1500, over a megabyte.
const std::string& BigJpeg() {
  static const std::string jpeg = MakeJpeg(JpegSpec{.width = 2000, .height = 1500, .quality = 92});
  return jpeg;
}

// Rewrites the dimensions in a JPEG's SOF0 marker.
std::string WithDimensions(std::string jpeg, int width, int height) {
  const size_t sof = jpeg.find("\xff\xc0");
  EXPECT_NE(sof, std::string::npos);
  jpeg[sof + 5] = static_cast<char>(height >> 8);
  jpeg[sof + 6] = static_cast<char>(height & 0xff);
  jpeg[sof + 7] = static_cast<char>(width >> 8);
  jpeg[sof + 8] = static_cast<char>(width & 0xff);
  return jpeg;
}

TEST(CapPhotoTest, KeepsAPhotoWithinTheLimits) {
  const Photo small = Jpeg(MakeJpeg(JpegSpec{.width = 300, .height = 200}));
  ASSERT_LT(small.data.size(), kDefaultPhotoMaxBytes);
  const CappedPhoto capped = CapPhoto(small);
  EXPECT_EQ(capped.outcome, Outcome::kKept);
  EXPECT_EQ(capped.photo, small);
  EXPECT_EQ(capped.reason, "");

  const Photo png{"image/png", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(1000, 'x'), ""};
  EXPECT_EQ(CapPhoto(png).photo, png);
  const Photo by_uri{"image/jpeg", "", "https://example.org/a.jpg"};
  EXPECT_EQ(CapPhoto(by_uri, 10, 10).photo, by_uri);
}

TEST(CapPhotoTest, ResamplesABigJpegDeterministically) {
  const Photo big = Jpeg(BigJpeg());
  ASSERT_GT(big.data.size(), 1000u * 1024);
  const auto start = std::chrono::steady_clock::now();
  const CappedPhoto capped = CapPhoto(big);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  std::printf("CapPhoto 2000x1500 (%zu bytes) -> %zu bytes in %lld ms\n", big.data.size(),
              capped.photo ? capped.photo->data.size() : 0,
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
  ASSERT_EQ(capped.outcome, Outcome::kResampled) << capped.reason;
  ASSERT_TRUE(capped.photo.has_value());
  EXPECT_EQ(capped.photo->media_type, "image/jpeg");
  EXPECT_LE(capped.photo->data.size(), kDefaultPhotoMaxBytes);
  const Decoded out = DecodeJpegForTest(capped.photo->data);
  EXPECT_EQ(out.width, 512);
  EXPECT_EQ(out.height, 384);
  EXPECT_EQ(out.components, 3);
  EXPECT_EQ(capped.reason.find("resized from 2000x1500"), 0u) << capped.reason;
  // Same input, same bytes: the planner must not see a change every run.
  EXPECT_EQ(CapPhoto(big).photo, capped.photo);
  // The result is within the limits, so a second pass keeps it.
  EXPECT_EQ(CapPhoto(*capped.photo).outcome, Outcome::kKept);
}

TEST(CapPhotoTest, ShrinksAJpegWithinTheBytesButOverThePixels) {
  const Photo wide = Jpeg(MakeJpeg(JpegSpec{.width = 1200, .height = 800, .quality = 20}));
  ASSERT_LT(wide.data.size(), kDefaultPhotoMaxBytes);
  const CappedPhoto capped = CapPhoto(wide);
  ASSERT_EQ(capped.outcome, Outcome::kResampled);
  const Decoded out = DecodeJpegForTest(capped.photo->data);
  EXPECT_EQ(out.width, 512);
  EXPECT_EQ(out.height, 341);
}

TEST(CapPhotoTest, StepsDownQualityAndSizeUntilItFits) {
  const Photo big = Jpeg(BigJpeg());
  const CappedPhoto capped = CapPhoto(big, 3 * 1024, 512);
  ASSERT_EQ(capped.outcome, Outcome::kResampled) << capped.reason;
  EXPECT_LE(capped.photo->data.size(), 3u * 1024);
  const Decoded out = DecodeJpegForTest(capped.photo->data);
  EXPECT_LT(out.width, 512);
  EXPECT_NEAR(static_cast<double>(out.width) / out.height, 4.0 / 3.0, 0.02);

  const CappedPhoto hopeless = CapPhoto(big, 200, 512);
  EXPECT_EQ(hopeless.outcome, Outcome::kDropped);
  EXPECT_FALSE(hopeless.photo.has_value());
  EXPECT_NE(hopeless.reason.find("does not fit in 200 bytes"), std::string::npos)
      << hopeless.reason;
}

TEST(CapPhotoTest, UsesEveryDctScale) {
  // 1/8 of 4100 is still over 512: DCT scaling does the bulk, averaging the rest.
  for (int width : {600, 1100, 2100, 4100}) {
    const CappedPhoto capped = CapPhoto(
        Jpeg(MakeJpeg(JpegSpec{.width = width, .height = 64, .quality = 95})), 1 << 20, 512);
    ASSERT_EQ(capped.outcome, Outcome::kResampled) << width;
    const Decoded out = DecodeJpegForTest(capped.photo->data);
    EXPECT_EQ(out.width, 512) << width;
    EXPECT_EQ(out.height, (64 * 512 + width / 2) / width) << width;
  }
}

TEST(CapPhotoTest, GreyCmykAndProgressiveJpegs) {
  const CappedPhoto grey = CapPhoto(
      Jpeg(MakeJpeg(JpegSpec{.width = 1024, .height = 1024, .color = JCS_GRAYSCALE})), 1 << 20);
  ASSERT_EQ(grey.outcome, Outcome::kResampled);
  EXPECT_EQ(DecodeJpegForTest(grey.photo->data).components, 1);

  // Adobe CMYK stores ink inverted: 255 everywhere is white paper.
  const CappedPhoto cmyk = CapPhoto(
      Jpeg(
          MakeJpeg(JpegSpec{.width = 1000,
                            .height = 600,
                            .color = JCS_CMYK,
                            .fill = [](int, int, unsigned char* px) { std::fill_n(px, 4, 255); }})),
      1 << 20);
  ASSERT_EQ(cmyk.outcome, Outcome::kResampled) << cmyk.reason;
  const Decoded white = DecodeJpegForTest(cmyk.photo->data);
  ASSERT_EQ(white.components, 3);
  EXPECT_GE(white.at(10, 10)[0], 250);
  EXPECT_GE(white.at(10, 10)[2], 250);

  const CappedPhoto progressive =
      CapPhoto(Jpeg(MakeJpeg(JpegSpec{.width = 1600, .height = 1200, .progressive = true})));
  ASSERT_EQ(progressive.outcome, Outcome::kResampled) << progressive.reason;
  EXPECT_EQ(DecodeJpegForTest(progressive.photo->data).width, 512);
}

TEST(CapPhotoTest, TurnsThePhotoUprightByItsExifOrientation) {
  // Left half red, right half blue; orientation 6 says "rotate 90 degrees
  // clockwise to view", which puts the left half on top.
  auto halves = [](int x, int, unsigned char* px) {
    px[0] = x < 400 ? 255 : 0;
    px[1] = 0;
    px[2] = x < 400 ? 0 : 255;
  };
  const Photo sideways =
      Jpeg(MakeJpeg(JpegSpec{.width = 800, .height = 400, .orientation = 6, .fill = halves}));
  const CappedPhoto capped = CapPhoto(sideways, 1 << 20, 200);
  ASSERT_EQ(capped.outcome, Outcome::kResampled);
  const Decoded out = DecodeJpegForTest(capped.photo->data);
  ASSERT_EQ(out.width, 100);
  ASSERT_EQ(out.height, 200);
  EXPECT_GT(out.at(50, 20)[0], 200);  // top: red
  EXPECT_LT(out.at(50, 20)[2], 60);
  EXPECT_GT(out.at(50, 180)[2], 200);  // bottom: blue
  EXPECT_LT(out.at(50, 180)[0], 60);

  // Orientation 8 is the other way round; 3 turns it upside down.
  const Decoded ccw = DecodeJpegForTest(
      CapPhoto(
          Jpeg(MakeJpeg(JpegSpec{.width = 800, .height = 400, .orientation = 8, .fill = halves})),
          1 << 20, 200)
          .photo->data);
  EXPECT_GT(ccw.at(50, 180)[0], 200);  // bottom: red
  const Decoded flipped = DecodeJpegForTest(
      CapPhoto(
          Jpeg(MakeJpeg(JpegSpec{.width = 800, .height = 400, .orientation = 3, .fill = halves})),
          1 << 20, 200)
          .photo->data);
  ASSERT_EQ(flipped.width, 200);
  EXPECT_GT(flipped.at(180, 50)[0], 200);  // right: red
}

TEST(CapPhotoTest, EveryExifOrientationShowsTheRightCornersOnTop) {
  // The stored image's quadrants in four colours; for each orientation, the
  // quadrants a viewer shows top left and top right (EXIF 2.32, 4.6.4).
  enum Quadrant { kTopLeft, kTopRight, kBottomLeft, kBottomRight };
  const unsigned char kColour[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
  auto quadrants = [&kColour](int x, int y, unsigned char* px) {
    const int q = (y >= 200 ? 2 : 0) + (x >= 400 ? 1 : 0);
    std::copy_n(kColour[q], 3, px);
  };
  const Quadrant kOnTop[9][2] = {{},
                                 {kTopLeft, kTopRight},
                                 {kTopRight, kTopLeft},
                                 {kBottomRight, kBottomLeft},
                                 {kBottomLeft, kBottomRight},
                                 {kTopLeft, kBottomLeft},
                                 {kBottomLeft, kTopLeft},
                                 {kBottomRight, kTopRight},
                                 {kTopRight, kBottomRight}};
  for (int orientation = 1; orientation <= 8; ++orientation) {
    SCOPED_TRACE(orientation);
    const CappedPhoto capped =
        CapPhoto(Jpeg(MakeJpeg(JpegSpec{
                     .width = 800, .height = 400, .orientation = orientation, .fill = quadrants})),
                 1 << 20, 200);
    ASSERT_EQ(capped.outcome, Outcome::kResampled);
    const Decoded out = DecodeJpegForTest(capped.photo->data);
    ASSERT_EQ(out.width, orientation >= 5 ? 100 : 200);
    const unsigned char* corners[2] = {out.at(10, 10), out.at(out.width - 11, 10)};
    for (int k = 0; k < 2; ++k) {
      for (int c = 0; c < 3; ++c) {
        EXPECT_NEAR(corners[k][c], kColour[kOnTop[orientation][k]][c], 40) << k << " " << c;
      }
    }
  }
}

TEST(CapPhotoTest, DropsWhatItCannotShrink) {
  const Photo png{"image/png", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(200 * 1024, 'x'),
                  ""};
  const CappedPhoto dropped = CapPhoto(png);
  EXPECT_EQ(dropped.outcome, Outcome::kDropped);
  EXPECT_FALSE(dropped.photo.has_value());
  EXPECT_EQ(dropped.reason,
            "a 201 KB image/png photo is over the 100 KB limit, and only JPEG can be made smaller");

  const Photo gif{"", "GIF89a" + std::string(200 * 1024, '\0'), ""};
  EXPECT_EQ(CapPhoto(gif).outcome, Outcome::kDropped);
  EXPECT_NE(CapPhoto(gif).reason.find("untyped"), std::string::npos);

  const CappedPhoto off = CapPhoto(Jpeg(MakeJpeg(JpegSpec{})), 1 << 20, 0);
  EXPECT_EQ(off.outcome, Outcome::kDropped);
  EXPECT_EQ(off.reason, "photos are turned off");
}

TEST(CapPhotoTest, DropsDamagedJpegs) {
  const std::string& big = BigJpeg();
  const CappedPhoto truncated = CapPhoto(Jpeg(big.substr(0, big.size() / 2)));
  EXPECT_EQ(truncated.outcome, Outcome::kDropped);
  EXPECT_EQ(truncated.reason.find("the JPEG is damaged and does not decode"), 0u)
      << truncated.reason;
  EXPECT_LT(truncated.reason.size(), 200u);  // a reason, never the bytes

  // Within the byte limit, a JPEG that does not even have a header.
  for (const std::string& junk :
       {std::string("\xff\xd8\xff"), std::string("\xff\xd8\xff\xe0") + std::string(100, '\x00'),
        big.substr(0, 300)}) {
    const CappedPhoto capped = CapPhoto(Jpeg(junk));
    EXPECT_EQ(capped.outcome, Outcome::kDropped) << junk.size();
  }
}

TEST(CapPhotoTest, RefusesAbsurdDimensionsBeforeDecoding) {
  const std::string small = MakeJpeg(JpegSpec{.width = 16, .height = 16});
  for (auto [w, h] : {std::pair{30000, 100}, std::pair{100, 20001}, std::pair{15000, 15000}}) {
    const CappedPhoto capped = CapPhoto(Jpeg(WithDimensions(small, w, h)));
    EXPECT_EQ(capped.outcome, Outcome::kDropped);
    EXPECT_EQ(capped.reason, "the JPEG claims " + std::to_string(w) + "x" + std::to_string(h) +
                                 " pixels, more than roster decodes");
  }
  // Within the limits of both, a header that lies about its size still decodes
  // to nothing worth having.
  EXPECT_EQ(CapPhoto(Jpeg(WithDimensions(small, 10000, 10000))).outcome, Outcome::kDropped);
}

TEST(CapPhotoTest, RefusesAProgressiveJpegWithThousandsOfScans) {
  // One coefficient per scan, refined a bit at a time: valid, and slow to
  // decode in proportion to the scan count.
  std::vector<jpeg_scan_info> scans;
  scans.push_back(jpeg_scan_info{1, {0}, 0, 0, 0, 0});
  for (int k = 1; k < 64; ++k) {
    scans.push_back(jpeg_scan_info{1, {0}, k, k, 0, 4});
    for (int al = 3; al >= 0; --al) scans.push_back(jpeg_scan_info{1, {0}, k, k, al + 1, al});
  }
  ASSERT_GT(scans.size(), 256u);
  const std::string many = MakeJpeg(JpegSpec{
      .width = 800, .height = 800, .color = JCS_GRAYSCALE, .progressive = true, .scans = scans});
  const CappedPhoto capped = CapPhoto(Jpeg(many), 1 << 20, 512);
  EXPECT_EQ(capped.outcome, Outcome::kDropped);
  EXPECT_EQ(capped.reason, "the JPEG has more than 256 scans");
}

}  // namespace
}  // namespace roster
