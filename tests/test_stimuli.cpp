// Tests of the natural-image stimuli (src/sim/photos.hpp, `v1sysid images`): decoding to known luminance,
// exact area downsampling, the contrast rule, natural-image statistics of real crops, the split by source
// photo, reproducibility and the command line.
//
// The tests on real crops need the photo cache made by env/fetch-photos.sh ($V1SYSID_PHOTO_CACHE or
// /var/cache/v1sysid/photos). Without it they FAIL (not skip) with a message saying to run that script.
#include "sim/photos.hpp"

#include "core/error.hpp"
#include "io/h5.hpp"
#include "test_support.hpp"

#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

namespace {

using namespace v1sysid;
using namespace v1sysid::sim;
using v1sysid::testing::ScratchDir;

// ---- encoders used to make test images ----------------------------------------------------------------

// Writes an 8-bit PNG with the simplified libpng API. `format` is PNG_FORMAT_GRAY, _RGB, _RGBA, ... and may
// carry PNG_FORMAT_FLAG_LINEAR (16-bit samples, `data` then holds uint16) or _COLORMAP (`colormap` used).
void write_png(const std::string& path, int width, int height, png_uint_32 format, const void* data,
               const void* colormap = nullptr, int colormap_entries = 0) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = format;
  image.colormap_entries = static_cast<png_uint_32>(colormap_entries);
  ASSERT_NE(png_image_write_to_file(&image, path.c_str(), 0, data, 0, colormap), 0) << image.message;
}

// Writes a baseline JPEG with libjpeg (components 1 = grey, 3 = RGB), at the given quality.
void write_jpeg(const std::string& path, int width, int height, int components, const std::vector<unsigned char>& data,
                int quality) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = components;
  cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row =
        const_cast<unsigned char*>(data.data()) + static_cast<size_t>(cinfo.next_scanline) * width * components;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

std::string photo_cache() { return default_photo_cache(); }

bool photo_cache_complete(std::string* missing) {
  for (const auto& p : curated_photos()) {
    const auto file = std::filesystem::path(photo_cache()) / p.package / p.relative_path;
    if (!std::filesystem::is_regular_file(file)) {
      *missing = file.string();
      return false;
    }
  }
  return true;
}

#define REQUIRE_PHOTO_CACHE()                                                                             \
  do {                                                                                                    \
    std::string missing_photo;                                                                            \
    ASSERT_TRUE(photo_cache_complete(&missing_photo))                                                     \
        << "the photo cache is missing or incomplete (" << missing_photo << "): run env/fetch-photos.sh " \
        << "(as root, or with V1SYSID_PHOTO_CACHE set to a writable folder) before these tests";          \
  } while (0)

// ---- decoding ----------------------------------------------------------------------------------------

TEST(Decode, RgbPngGivesRec601Luminance) {
  ScratchDir dir;
  const int w = 5, h = 3;
  std::vector<unsigned char> rgb(static_cast<size_t>(w * h * 3));
  std::mt19937 rng(3);
  for (auto& v : rgb) v = static_cast<unsigned char>(rng() % 256);
  rgb[0] = 255, rgb[1] = 0, rgb[2] = 0;  // pure red -> 0.299 * 255
  write_png(dir / "rgb.png", w, h, PNG_FORMAT_RGB, rgb.data());
  const GrayImage img = decode_photo(dir / "rgb.png");
  ASSERT_EQ(img.width, w);
  ASSERT_EQ(img.height, h);
  EXPECT_NEAR(img.at(0, 0), 0.299 * 255, 1e-4);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y * w + x) * 3;
      const double expected = 0.299 * rgb[i] + 0.587 * rgb[i + 1] + 0.114 * rgb[i + 2];
      EXPECT_NEAR(img.at(y, x), expected, 1e-3) << "pixel (" << y << ", " << x << ")";
    }
  }
}

TEST(Decode, GreyPalette16BitAndAlphaPngs) {
  ScratchDir dir;
  // 8-bit grey: values unchanged.
  std::vector<unsigned char> grey = {0, 1, 127, 128, 254, 255};
  write_png(dir / "grey.png", 3, 2, PNG_FORMAT_GRAY, grey.data());
  GrayImage g = decode_photo(dir / "grey.png");
  ASSERT_EQ(g.pixels.size(), grey.size());
  for (size_t i = 0; i < grey.size(); ++i) EXPECT_EQ(g.pixels[i], grey[i]);

  // 16-bit grey: 257 * k is k on the 8-bit scale.
  std::vector<uint16_t> deep = {0, 257 * 10, 257 * 200, 65535};
  write_png(dir / "deep.png", 2, 2, PNG_FORMAT_LINEAR_Y, deep.data());
  g = decode_photo(dir / "deep.png");
  const float expected_deep[] = {0, 10, 200, 255};
  for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(g.pixels[i], expected_deep[i]);

  // Palette: indices into an RGB colour map.
  const unsigned char colormap[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};
  std::vector<unsigned char> index = {0, 1, 2, 3, 3, 0};
  write_png(dir / "palette.png", 3, 2, PNG_FORMAT_RGB_COLORMAP, index.data(), colormap, 4);
  g = decode_photo(dir / "palette.png");
  for (size_t i = 0; i < index.size(); ++i) {
    const unsigned char* c = colormap + 3 * index[i];
    EXPECT_NEAR(g.pixels[i], 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2], 1e-3) << "pixel " << i;
  }

  // RGBA: alpha is ignored, colour kept.
  std::vector<unsigned char> rgba = {200, 100, 50, 0, 10, 20, 30, 255};
  write_png(dir / "rgba.png", 2, 1, PNG_FORMAT_RGBA, rgba.data());
  g = decode_photo(dir / "rgba.png");
  EXPECT_NEAR(g.pixels[0], 0.299 * 200 + 0.587 * 100 + 0.114 * 50, 1e-3);
  EXPECT_NEAR(g.pixels[1], 0.299 * 10 + 0.587 * 20 + 0.114 * 30, 1e-3);
}

TEST(Decode, JpegBlocksGiveKnownLuminance) {
  ScratchDir dir;
  // Constant 8 x 8 (grey) and 16 x 16 (colour, chroma subsampled) blocks have only a DC coefficient, so a
  // quality-100 JPEG reproduces them up to the rounding of the colour transform.
  const int w = 32, h = 16;
  std::vector<unsigned char> grey(static_cast<size_t>(w * h));
  const unsigned char levels[] = {0, 37, 90, 128, 171, 200, 233, 255};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) grey[static_cast<size_t>(y * w + x)] = levels[(y / 8) * 4 + x / 8];
  write_jpeg(dir / "grey.jpg", w, h, 1, grey, 100);
  GrayImage g = decode_photo(dir / "grey.jpg");
  ASSERT_EQ(g.width, w);
  ASSERT_EQ(g.height, h);
  for (size_t i = 0; i < grey.size(); ++i) ASSERT_NEAR(g.pixels[i], grey[i], 1.0) << "pixel " << i;

  const unsigned char colours[2][3] = {{220, 40, 60}, {30, 160, 90}};
  std::vector<unsigned char> rgb(static_cast<size_t>(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) rgb[static_cast<size_t>((y * w + x) * 3 + c)] = colours[x / 16][c];
  write_jpeg(dir / "rgb.jpg", w, h, 3, rgb, 100);
  g = decode_photo(dir / "rgb.jpg");
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const unsigned char* c = colours[x / 16];
      ASSERT_NEAR(g.at(y, x), 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2], 2.0) << "pixel (" << y << ", " << x << ")";
    }
  }
}

TEST(Decode, BrokenFilesAreTypedErrors) {
  ScratchDir dir;
  EXPECT_THROW(decode_photo(dir / "absent.jpg"), IoError);
  std::ofstream(dir / "text.png") << "not an image at all";
  EXPECT_THROW(decode_photo(dir / "text.png"), DataError);

  std::vector<unsigned char> grey(64 * 64);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<unsigned char>((i * 7919) % 251);
  write_jpeg(dir / "whole.jpg", 64, 64, 1, grey, 90);
  std::ifstream in(dir / "whole.jpg", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(dir / "cut.jpg", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    decode_photo(dir / "cut.jpg");
    FAIL() << "a truncated JPEG was decoded without error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.jpg"), std::string::npos) << e.what();
  }
}

TEST(Decode, LosslessWebpGivesRec601LuminanceAndBrokenWebpIsADataError) {
  ScratchDir dir;
  const int width = 7, height = 5;
  std::vector<uint8_t> rgb(static_cast<size_t>(width * height * 3));
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  uint8_t* encoded = nullptr;
  const size_t size = WebPEncodeLosslessRGB(rgb.data(), width, height, width * 3, &encoded);
  ASSERT_GT(size, 0u);
  const std::string bytes(reinterpret_cast<const char*>(encoded), size);
  WebPFree(encoded);
  // A .png name on purpose: the decoder is chosen by the file's signature.
  std::ofstream(dir / "image.png", std::ios::binary) << bytes;
  const GrayImage img = decode_photo(dir / "image.png");
  ASSERT_EQ(img.width, width);
  ASSERT_EQ(img.height, height);
  for (size_t i = 0; i < img.pixels.size(); ++i)
    EXPECT_EQ(img.pixels[i], rec601_luminance(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2])) << "pixel " << i;
  std::ofstream(dir / "cut.webp", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    decode_photo(dir / "cut.webp");
    FAIL() << "a truncated WebP was decoded without error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("WebP"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cut.webp"), std::string::npos) << e.what();
  }
}

TEST(Decode, GcomprisPhotoFromItsResourceBundle) {
  REQUIRE_PHOTO_CACHE();
  // fish3 is a lossy 320 x 240 WebP that env/fetch-photos.sh unpacks from categorization.rcc.
  const PhotoSource* fish = nullptr;
  for (const auto& p : curated_photos()) {
    if (std::string(p.name) == "fish3") fish = &p;
  }
  ASSERT_NE(fish, nullptr);
  const GrayImage img =
      decode_photo((std::filesystem::path(photo_cache()) / fish->package / fish->relative_path).string());
  EXPECT_EQ(img.width, 320);
  EXPECT_EQ(img.height, 240);
  const CropStats st = crop_stats(img.pixels.data(), img.height, img.width, img.width);
  EXPECT_GT(st.sd, 20.0);  // a photograph, not a blank or garbled buffer
  EXPECT_GT(st.mean, 20.0);
  EXPECT_LT(st.mean, 235.0);
}

TEST(CuratedPhotos, AttributionListsEveryPhotoWithItsRowAndSplit) {
  // data/ATTRIBUTION.md is where the licences' attribution is given; it must name every curated photograph,
  // at its photo_index, with its package, path, licence and split.
  std::ifstream in(v1sysid::testing::source_dir() + "/data/ATTRIBUTION.md");
  ASSERT_TRUE(in) << "data/ATTRIBUTION.md not found";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto& photos = curated_photos();
  EXPECT_EQ(photos.size(), 111u);
  std::set<std::string> names, packages;
  long test_photos = 0;
  for (size_t i = 0; i < photos.size(); ++i) {
    const PhotoSource& p = photos[i];
    EXPECT_TRUE(names.insert(p.name).second) << "duplicate name " << p.name;
    packages.insert(p.package);
    test_photos += p.reserved_for_test;
    const std::string row =
        "| " + std::to_string(i) + " | " + p.name + " | " + p.package + " | " + p.relative_path + " | ";
    const size_t at = text.find(row);
    ASSERT_NE(at, std::string::npos) << "no row '" << row << "' in data/ATTRIBUTION.md";
    const std::string line = text.substr(at, text.find('\n', at) - at);
    EXPECT_NE(line.find(std::string(" | ") + p.licence + " | "), std::string::npos) << line;
    EXPECT_NE(line.find(p.reserved_for_test ? "| **test** |" : "| trainval |"), std::string::npos) << line;
  }
  EXPECT_EQ(packages.size(), 12u);
  EXPECT_EQ(test_photos, 22);  // 20 % of the photographs for the test tier
}

// ---- area downsampling -------------------------------------------------------------------------------

GrayImage random_image(int height, int width, unsigned seed) {
  GrayImage img;
  img.height = height;
  img.width = width;
  std::mt19937 rng(seed);
  for (int i = 0; i < height * width; ++i) img.pixels.push_back(static_cast<float>(rng() % 256));
  return img;
}

// Reference: overlap of output square [j f, (j+1) f) with every input pixel [k, k+1), computed directly.
double reference_area_pixel(const GrayImage& in, double f, int i, int j) {
  double sum = 0;
  for (int y = 0; y < in.height; ++y) {
    const double oy = std::max(0.0, std::min((i + 1) * f, y + 1.0) - std::max(i * f, double(y)));
    for (int x = 0; x < in.width; ++x) {
      const double ox = std::max(0.0, std::min((j + 1) * f, x + 1.0) - std::max(j * f, double(x)));
      sum += oy * ox * in.at(y, x);
    }
  }
  return sum / (f * f);
}

TEST(AreaDownsample, IntegerFactorIsBlockMean) {
  const GrayImage in = random_image(6, 8, 1);
  const GrayImage out = area_downsample(in, 2, 1);
  ASSERT_EQ(out.width, 4);
  ASSERT_EQ(out.height, 3);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) {
      const double mean =
          (in.at(2 * i, 2 * j) + in.at(2 * i, 2 * j + 1) + in.at(2 * i + 1, 2 * j) + in.at(2 * i + 1, 2 * j + 1)) / 4.0;
      EXPECT_NEAR(out.at(i, j), mean, 1e-4);
    }
}

TEST(AreaDownsample, NonIntegerFactorsWeightPartialPixels) {
  // 3 -> 2: output (0, 0) = (a00 + a01/2 + a10/2 + a11/4) / 2.25, written out by hand.
  GrayImage in;
  in.height = 3;
  in.width = 3;
  in.pixels = {10, 20, 30, 40, 50, 60, 70, 80, 90};
  const GrayImage out = area_downsample(in, 3, 2);
  ASSERT_EQ(out.width, 2);
  ASSERT_EQ(out.height, 2);
  EXPECT_NEAR(out.at(0, 0), (10 + 20 * 0.5 + 40 * 0.5 + 50 * 0.25) / 2.25, 1e-4);
  EXPECT_NEAR(out.at(1, 1), (50 * 0.25 + 60 * 0.5 + 80 * 0.5 + 90) / 2.25, 1e-4);

  struct Case {
    int h, w;
    int64_t num, den;
  };
  for (const Case c : {Case{7, 11, 7, 3}, Case{20, 33, 33, 8}, Case{9, 12, 5, 4}, Case{83, 83, 83, 2}}) {
    const GrayImage src = random_image(c.h, c.w, static_cast<unsigned>(c.h * 100 + c.w));
    const GrayImage dst = area_downsample(src, c.num, c.den);
    const double f = double(c.num) / double(c.den);
    ASSERT_EQ(dst.width, static_cast<int>(c.w * c.den / c.num));
    ASSERT_EQ(dst.height, static_cast<int>(c.h * c.den / c.num));
    for (int i = 0; i < dst.height; ++i)
      for (int j = 0; j < dst.width; ++j)
        ASSERT_NEAR(dst.at(i, j), reference_area_pixel(src, f, i, j), 1e-3)
            << "factor " << c.num << "/" << c.den << " pixel (" << i << ", " << j << ")";
  }
}

TEST(AreaDownsample, PreservesConstantsAndMeanAndRejectsUpsampling) {
  GrayImage flat;
  flat.height = 30;
  flat.width = 45;
  flat.pixels.assign(30 * 45, 77.25f);
  const GrayImage out = area_downsample(flat, 45, 17);
  for (float v : out.pixels) ASSERT_FLOAT_EQ(v, 77.25f);

  // When the factor divides both sides exactly, the image mean is preserved.
  const GrayImage src = random_image(30, 45, 9);
  const GrayImage half = area_downsample(src, 5, 2);  // 45 -> 18, 30 -> 12
  double mean_src = 0, mean_dst = 0;
  for (float v : src.pixels) mean_src += v / src.pixels.size();
  for (float v : half.pixels) mean_dst += v / half.pixels.size();
  EXPECT_NEAR(mean_src, mean_dst, 1e-3);
  EXPECT_THROW(area_downsample(src, 2, 3), DataError);
}

// ---- the contrast rule -------------------------------------------------------------------------------

TEST(Tiling, CropSizedStrideGridDropsLowContrastCrops) {
  // 72 x 160 image: flat up to x = 32, then a checkerboard of +-a around 100 (SD exactly a).
  auto make = [](float amplitude) {
    GrayImage img;
    img.height = 72;
    img.width = 160;
    img.pixels.assign(72 * 160, 100.0f);
    for (int y = 0; y < 72; ++y)
      for (int x = 32; x < 160; ++x)
        img.pixels[static_cast<size_t>(y * 160 + x)] = 100.0f + ((x + y) % 2 ? amplitude : -amplitude);
    return img;
  };
  CropOptions options;  // 36 x 64, stride 36 x 64 (crops side by side), min SD 4
  const auto strong = tile_positions(make(10.0f), options);
  // Grid: x in {0, 64} (x = 128 does not fit), y in {0, 36}. x = 0 straddles (SD ~7, kept); x = 64 is all
  // checkerboard (SD 10, kept). A half-tile grid would add x = 32, 96 and y = 18.
  std::set<std::pair<int, int>> got(strong.begin(), strong.end());
  std::set<std::pair<int, int>> want;
  for (int y : {0, 36})
    for (int x : {0, 64}) want.insert({x, y});
  EXPECT_EQ(got, want);
  // SD just under and just over the threshold.
  const auto weak = tile_positions(make(3.9f), options);
  EXPECT_TRUE(weak.empty()) << weak.size() << " crops with SD <= 3.9 were kept";
  options.min_sd = 3.0;
  EXPECT_EQ(tile_positions(make(3.9f), options).size(), 2u);  // only the fully textured column passes
}

TEST(CropOverlap, ComparedInPhotoCoordinatesAcrossScales) {
  const int h = 36, w = 64;
  // Same scale: side by side touch but do not overlap; one pixel further in they do.
  EXPECT_FALSE(crops_overlap({0, 0, 512}, {64, 0, 512}, h, w));
  EXPECT_FALSE(crops_overlap({0, 0, 512}, {0, 36, 512}, h, w));
  EXPECT_TRUE(crops_overlap({0, 0, 512}, {63, 35, 512}, h, w));
  // Across scales: x = 64 at width 256 covers [0.25, 0.5) of the photo width, x = 128 at width 512 covers
  // [0.25, 0.375): overlap; x = 0 at width 256 covers [0, 0.25) and only touches it.
  EXPECT_TRUE(crops_overlap({64, 0, 256}, {128, 0, 512}, h, w));
  EXPECT_FALSE(crops_overlap({0, 0, 256}, {128, 0, 512}, h, w));
  // Vertically too: y = 36 at width 256 covers [36, 72) / 256, y = 71 at width 512 covers [71, 107) / 512.
  EXPECT_TRUE(crops_overlap({0, 36, 256}, {0, 71, 512}, h, w));
  EXPECT_FALSE(crops_overlap({0, 36, 256}, {0, 72 + 72, 512}, h, w));
  // Widths 300 and 1000: x = 30 of 300 starts at 0.1 of the photo width, where x = 36 of 1000 ends (36 + 64
  // = 100): a touch, which floating-point factors could misjudge; one pixel further it is an overlap.
  EXPECT_FALSE(crops_overlap({30, 0, 300}, {36, 0, 1000}, h, w));
  EXPECT_TRUE(crops_overlap({30, 0, 300}, {37, 0, 1000}, h, w));
}

TEST(StimulusSummary, CountsPhotosEffectiveNumberAndMeasuredOverlaps) {
  StimulusSet set;
  set.height = 36;
  set.width = 64;
  // trainval: photo 0 three crops, photo 1 one crop; test: photo 2 two crops.
  const std::vector<int32_t> photo{0, 0, 0, 1, 2, 2};
  const std::vector<std::string> split{"trainval", "trainval", "trainval", "trainval", "test", "test"};
  set.photo_index = photo;
  set.split = split;
  set.scale.assign(6, 1.0f);
  set.position = {0, 0, 64, 0, 128, 0, 0, 0, 0, 0, 0, 36};
  set.scaled_width.assign(6, 256);
  StimulusSummary s = summarize_stimuli(set);
  EXPECT_EQ(s.trainval.crops, 4);
  EXPECT_EQ(s.trainval.photos, 2);
  EXPECT_EQ(s.trainval.min_per_photo, 1);
  EXPECT_EQ(s.trainval.max_per_photo, 3);
  EXPECT_DOUBLE_EQ(s.trainval.median_per_photo, 2.0);
  EXPECT_DOUBLE_EQ(s.trainval.effective_photos, 1.0 / (0.75 * 0.75 + 0.25 * 0.25));  // 1.6
  EXPECT_EQ(s.test.photos, 1);
  EXPECT_DOUBLE_EQ(s.test.effective_photos, 1.0);
  EXPECT_EQ(s.overlapping_pairs, 0);
  EXPECT_EQ(s.shared_photos, 0);
  // The check is measured: photo 0's third crop, moved to x = 16 of width 128, covers [0.125, 0.625) of the
  // photo width (and the top 36/128 of its height), so it overlaps both other crops, [0, 0.25) and [0.25, 0.5).
  set.position[4] = 16;
  set.scaled_width[2] = 128;
  s = summarize_stimuli(set);
  EXPECT_EQ(s.overlapping_pairs, 2);
  set.scaled_width.clear();
  EXPECT_EQ(summarize_stimuli(set).overlapping_pairs, -1);  // unknown without scaled_width
}

// ---- spectral slope estimator ------------------------------------------------------------------------

// A random-phase image whose amplitude spectrum falls as f^exponent.
std::vector<float> power_law_image(int height, int width, double exponent, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> img(static_cast<size_t>(height * width), 0.0);
  const double two_pi = 6.283185307179586;
  for (int ky = -height / 2; ky < height / 2; ++ky) {
    for (int kx = 0; kx <= width / 2; ++kx) {
      const double f = std::hypot(double(ky) / height, double(kx) / width);
      if (f == 0) continue;
      const double amp = std::pow(f, exponent) * std::abs(normal(rng));
      const double phase = two_pi * (rng() / 4294967296.0);
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
          img[static_cast<size_t>(y * width + x)] +=
              amp * std::cos(two_pi * (double(ky) * y / height + double(kx) * x / width) + phase);
    }
  }
  return std::vector<float>(img.begin(), img.end());
}

TEST(SpectralSlope, RecoversKnownPowerLawsAndWhiteNoise) {
  for (double exponent : {-1.0, -1.5, -2.0}) {
    double sum = 0;
    for (unsigned s = 0; s < 8; ++s) {
      const auto img = power_law_image(36, 64, exponent, 100 + s);
      sum += amplitude_spectrum_slope(img.data(), 36, 64);
    }
    EXPECT_NEAR(sum / 8, exponent, 0.25) << "power-law image with amplitude ~ f^" << exponent;
  }
  std::mt19937 rng(5);
  std::vector<float> noise(36 * 64);
  for (auto& v : noise) v = static_cast<float>(rng() % 256);
  EXPECT_NEAR(amplitude_spectrum_slope(noise.data(), 36, 64), 0.0, 0.3) << "white noise";
}

// ---- real crops (need the photo cache) --------------------------------------------------------------

class PhotoCrops : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string missing;
    if (!photo_cache_complete(&missing)) return;
    StimulusOptions options;
    options.trainval_count = 400;
    options.test_count = 100;
    options.seed = 11;
    set = new StimulusSet(build_photo_stimuli(options));
  }
  static void TearDownTestSuite() {
    delete set;
    set = nullptr;
  }
  static StimulusSet* set;
};
StimulusSet* PhotoCrops::set = nullptr;

TEST_F(PhotoCrops, HaveNaturalImageAmplitudeSpectra) {
  REQUIRE_PHOTO_CACHE();
  ASSERT_NE(set, nullptr);
  std::vector<double> slopes;
  const size_t crop = static_cast<size_t>(set->height * set->width);
  for (size_t i = 0; i < set->size(); ++i) {
    const double s = amplitude_spectrum_slope(set->images.data() + i * crop, set->height, set->width);
    ASSERT_TRUE(std::isfinite(s)) << "crop " << i;
    slopes.push_back(s);
  }
  double mean = 0, var = 0;
  for (double s : slopes) mean += s / slopes.size();
  for (double s : slopes) var += (s - mean) * (s - mean) / (slopes.size() - 1);
  std::printf("[ measured ] amplitude-spectrum slope over %zu crops: %.3f +- %.3f (mean +- SD)\n", slopes.size(), mean,
              std::sqrt(var));
  RecordProperty("spectral_slope_mean", std::to_string(mean));
  RecordProperty("spectral_slope_sd", std::to_string(std::sqrt(var)));
  EXPECT_GE(mean, -2.0);
  EXPECT_LE(mean, -0.8);
}

TEST_F(PhotoCrops, TestCropsShareNoSourcePhotoWithTrainval) {
  REQUIRE_PHOTO_CACHE();
  ASSERT_NE(set, nullptr);
  ASSERT_EQ(set->size(), 500u);
  std::set<int> trainval_photos, test_photos;
  long n_test = 0;
  for (size_t i = 0; i < set->size(); ++i) {
    const bool is_test = set->split[i] == "test";
    n_test += is_test;
    (is_test ? test_photos : trainval_photos).insert(set->photo_index[i]);
    EXPECT_EQ(curated_photos()[static_cast<size_t>(set->photo_index[i])].reserved_for_test, is_test) << "crop " << i;
  }
  EXPECT_EQ(n_test, 100);
  for (int p : test_photos) EXPECT_EQ(trainval_photos.count(p), 0u) << "photo " << p << " is in both splits";
  EXPECT_GE(test_photos.size(), 15u);  // issue 17: the 100 test crops come from at least 15 photographs
  EXPECT_GE(trainval_photos.size(), 60u);
  EXPECT_EQ(summarize_stimuli(*set).shared_photos, 0);
}

TEST_F(PhotoCrops, NoTwoCropsOfAPhotoOverlapInItsCoordinates) {
  REQUIRE_PHOTO_CACHE();
  ASSERT_NE(set, nullptr);
  // Independent of crops_overlap: rectangles from the recorded scale factor, in photo pixels, with a
  // tolerance for the float factor (an overlap of real crops is at least one scaled pixel, >= 1 photo pixel).
  std::map<int, std::vector<size_t>> by_photo;
  for (size_t i = 0; i < set->size(); ++i) by_photo[set->photo_index[i]].push_back(i);
  long pairs = 0;
  std::set<float> scales;
  for (const auto& [photo, rows] : by_photo) {
    for (size_t a = 0; a < rows.size(); ++a) {
      for (size_t b = a + 1; b < rows.size(); ++b) {
        const size_t i = rows[a], j = rows[b];
        const double si = set->scale[i], sj = set->scale[j];
        const double ox = std::min((set->position[2 * i] + set->width) * si, (set->position[2 * j] + set->width) * sj) -
                          std::max(set->position[2 * i] * si, set->position[2 * j] * sj);
        const double oy =
            std::min((set->position[2 * i + 1] + set->height) * si, (set->position[2 * j + 1] + set->height) * sj) -
            std::max(set->position[2 * i + 1] * si, set->position[2 * j + 1] * sj);
        EXPECT_FALSE(ox > 1e-3 && oy > 1e-3) << "crops " << i << " and " << j << " of photo " << photo << " overlap";
        ++pairs;
      }
    }
    for (size_t i : rows) scales.insert(set->scale[i]);
  }
  EXPECT_GT(pairs, 500);  // 500 crops of 111 photos: about 890 same-photo pairs
  EXPECT_GE(scales.size(), 8u) << "the crops should still come from several scales";
  EXPECT_EQ(summarize_stimuli(*set).overlapping_pairs, 0);
}

TEST(PhotoSelection, TooFewNonOverlappingCropsIsADataError) {
  REQUIRE_PHOTO_CACHE();
  StimulusOptions options;
  options.photo_subset = {0};  // camera, 512 x 512: at most 8 x 14 crops at its finest scale
  options.trainval_count = 200;
  options.test_count = 0;
  try {
    build_photo_stimuli(options);
    FAIL() << "200 non-overlapping crops from one 512 x 512 photo were accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("non-overlapping"), std::string::npos) << e.what();
  }
}

TEST_F(PhotoCrops, EveryCropPassesTheContrastRuleAndMatchesItsRecordedSource) {
  REQUIRE_PHOTO_CACHE();
  ASSERT_NE(set, nullptr);
  const size_t crop = static_cast<size_t>(set->height * set->width);
  for (size_t i = 0; i < set->size(); ++i) {
    const CropStats st = crop_stats(set->images.data() + i * crop, set->height, set->width, set->width);
    ASSERT_GE(st.sd, 4.0) << "crop " << i;
    ASSERT_GE(set->scale[i], 1.0f);
  }
  // Re-cut one crop from its photo, scale and position.
  const size_t i = 7;
  const PhotoSource& src = curated_photos()[static_cast<size_t>(set->photo_index[i])];
  const GrayImage full =
      decode_photo((std::filesystem::path(photo_cache()) / src.package / src.relative_path).string());
  const int scaled_width = static_cast<int>(std::lround(full.width / set->scale[i]));
  const GrayImage scaled = scaled_width == full.width ? full : area_downsample(full, full.width, scaled_width);
  const int x0 = set->position[2 * i], y0 = set->position[2 * i + 1];
  for (int y = 0; y < set->height; ++y)
    for (int x = 0; x < set->width; ++x)
      ASSERT_EQ(set->images[i * crop + static_cast<size_t>(y * set->width + x)], scaled.at(y0 + y, x0 + x));
}

// ---- the stimulus file and the command line ----------------------------------------------------------

void expect_same_sets(const StimulusSet& a, const StimulusSet& b) {
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.width, b.width);
  EXPECT_TRUE(a.images == b.images);
  EXPECT_EQ(a.split, b.split);
  EXPECT_EQ(a.photo_index, b.photo_index);
  EXPECT_EQ(a.scale, b.scale);
  EXPECT_EQ(a.position, b.position);
  EXPECT_EQ(a.scaled_width, b.scaled_width);
  EXPECT_EQ(a.generator, b.generator);
  EXPECT_EQ(a.seed, b.seed);
  ASSERT_EQ(a.photos.size(), b.photos.size());
  for (size_t i = 0; i < a.photos.size(); ++i) {
    EXPECT_EQ(a.photos[i].name, b.photos[i].name);
    EXPECT_EQ(a.photos[i].licence, b.photos[i].licence);
  }
}

TEST(StimulusFile, SameSeedGivesIdenticalFilesAndOtherSeedsDiffer) {
  REQUIRE_PHOTO_CACHE();
  ScratchDir dir;
  const std::string common = " --count 200 --test-count 40 --photos " + photo_cache();
  for (const char* name : {"a.h5", "b.h5"}) {
    const auto r = v1sysid::testing::run_v1sysid("images --out " + dir / name + " --seed 5" + common);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // The effective number of distinct images, with the measured overlap check.
    EXPECT_NE(r.output.find("effective number of photographs"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("inverse Simpson"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("overlapping crop pairs of one photograph (measured in photo coordinates): 0;"),
              std::string::npos)
        << r.output;
  }
  const auto file_bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  EXPECT_TRUE(file_bytes(dir / "a.h5") == file_bytes(dir / "b.h5")) << "same seed, different bytes";
  const auto r = v1sysid::testing::run_v1sysid("images --out " + dir / "c.h5" + " --seed 6" + common);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const StimulusSet a = read_stimuli(dir / "a.h5"), b = read_stimuli(dir / "b.h5"), c = read_stimuli(dir / "c.h5");
  EXPECT_EQ(a.size(), 240u);
  expect_same_sets(a, b);
  EXPECT_FALSE(a.images == c.images) << "a different seed gave the same crops";
  EXPECT_EQ(a.generator, kGeneratorPhotographs);
  h5::File f = h5::File::open(dir / "a.h5");
  EXPECT_EQ(f.read_attribute_int("/", "format_version"), 1);
  EXPECT_EQ(f.read_attribute_int("/", "seed"), 5);
  EXPECT_EQ(f.shape("images"), (h5::Shape{240, 36, 64}));
  EXPECT_EQ(f.shape("position"), (h5::Shape{240, 2}));
  EXPECT_EQ(f.read_strings("photos/licence").size(), curated_photos().size());
  EXPECT_EQ(f.shape("scaled_width"), (h5::Shape{240}));
  EXPECT_EQ(f.read_attribute_int("summary", "trainval_crops"), 200);
  EXPECT_EQ(f.read_attribute_int("summary", "test_crops"), 40);
  EXPECT_EQ(f.read_attribute_int("summary", "overlapping_crop_pairs"), 0);
  EXPECT_GT(f.read_attribute_double("summary", "trainval_effective_photos"), 50.0);
}

TEST(StimulusFile, RoundTripAndVersionCheck) {
  ScratchDir dir;
  StimulusOptions options;
  options.trainval_count = 6;
  options.test_count = 3;
  options.crop.height = 12;
  options.crop.width = 20;
  options.seed = 3;
  const StimulusSet leaves = build_dead_leaves_stimuli(options);
  write_stimuli(leaves, dir / "leaves.h5", false);
  expect_same_sets(leaves, read_stimuli(dir / "leaves.h5"));
  EXPECT_THROW(write_stimuli(leaves, dir / "leaves.h5", false), IoError);  // never overwrite without force
  write_stimuli(leaves, dir / "leaves.h5", true);

  {
    h5::File f = h5::File::open_rw(dir / "leaves.h5");
    f.write_attribute("/", "format_version", int64_t{2});
  }
  try {
    read_stimuli(dir / "leaves.h5");
    FAIL() << "format_version 2 was accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("format_version"), std::string::npos) << e.what();
  }
}

TEST(StimulusFile, DeadLeavesAreLabelledAndHaveNoPhotos) {
  StimulusOptions options;
  options.trainval_count = 50;
  options.test_count = 10;
  options.seed = 1;
  const StimulusSet set = build_dead_leaves_stimuli(options);
  EXPECT_EQ(set.generator, std::string(kGeneratorDeadLeaves));
  EXPECT_NE(set.generator.find("not natural images"), std::string::npos);
  ASSERT_EQ(set.size(), 60u);
  EXPECT_TRUE(set.photos.empty());
  const size_t crop = 36 * 64;
  for (size_t i = 0; i < set.size(); ++i) {
    EXPECT_EQ(set.photo_index[i], -1);
    EXPECT_EQ(set.split[i], i < 50 ? "trainval" : "test");
    EXPECT_GE(crop_stats(set.images.data() + i * crop, 36, 64, 64).sd, 4.0);
  }
}

TEST(ImagesCommand, MissingCacheSaysToRunFetchPhotos) {
  ScratchDir dir;
  const auto r = v1sysid::testing::run_v1sysid("images --out " + dir / "s.h5" + " --photos " + dir / "no-such-cache");
  EXPECT_EQ(r.exit_code, 3) << r.output;  // IoError
  EXPECT_NE(r.output.find("env/fetch-photos.sh"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "s.h5"));
}

TEST(ImagesCommand, ProceduralOnlyByNameAndNoSilentOverwrite) {
  ScratchDir dir;
  auto r = v1sysid::testing::run_v1sysid("images --out " + dir / "s.h5" +
                                         " --procedural dead_leaves --count 20 --test-count 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  h5::File f = h5::File::open(dir / "s.h5");
  EXPECT_EQ(f.read_attribute_string("/", "generator"), kGeneratorDeadLeaves);
  r = v1sysid::testing::run_v1sysid("images --out " + dir / "s.h5" +
                                    " --procedural dead_leaves --count 20 --test-count 5");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
  r = v1sysid::testing::run_v1sysid("images --out " + dir / "t.h5" + " --procedural white_noise");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "t.h5"));
  // No crop at all is refused, not written as an empty stimulus file (exit 0 before).
  r = v1sysid::testing::run_v1sysid("images --out " + dir / "e.h5" + " --procedural dead_leaves --count 0 --test-count 0");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--count and --test-count are both 0"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "e.h5"));
}

}  // namespace
