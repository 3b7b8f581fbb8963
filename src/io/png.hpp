// PNG encoding (libpng) of an 8-bit RGB raster into memory; write it with write_file_atomically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace v1sysid {

// rgb: height rows of width pixels, 3 bytes each (row-major). Error when libpng fails.
std::string encode_png_rgb(int width, int height, const std::vector<uint8_t>& rgb);

}  // namespace v1sysid
