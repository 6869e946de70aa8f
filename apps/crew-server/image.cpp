#include "image.hpp"

#include <spng.h>
#include <turbojpeg.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <variant>

#include "number.hpp"

namespace crew_server {
namespace {

using json = crew::message::value_type;

image_answer failure(int status, std::string message) {
  return {status, "application/json", json{{"error", std::move(message)}}.dump()};
}

// A decoded image, or the answer that refuses it.
using decoded = std::variant<picture, image_answer>;

bool too_big(std::uint64_t width, std::uint64_t height) { return width * height > max_image_pixels; }

std::string size_text(std::uint64_t width, std::uint64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

// --- PNG, through libspng ---------------------------------------------------

struct spng_closer {
  void operator()(spng_ctx* ctx) const noexcept { spng_ctx_free(ctx); }
};
using spng_context = std::unique_ptr<spng_ctx, spng_closer>;

decoded decode_png(std::string_view bytes) {
  spng_context ctx(spng_ctx_new(0));
  if (!ctx) throw std::bad_alloc();
  // Chunks beside the pixels (text, ICC profiles) are skipped past 1 MiB each,
  // so that a small file cannot claim memory out of proportion to it.
  spng_set_chunk_limits(ctx.get(), 1 << 20, 4 << 20);
  spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());
  spng_ihdr header{};
  if (int e = spng_get_ihdr(ctx.get(), &header))
    return failure(400, std::string("the PNG does not decode: ") + spng_strerror(e));
  if (too_big(header.width, header.height))
    return failure(413, "the image is " + size_text(header.width, header.height) + ", over the limit of " +
                            std::to_string(max_image_pixels) + " pixels");
  picture p;
  p.width = static_cast<int>(header.width);
  p.height = static_cast<int>(header.height);
  spng_trns transparency{};
  bool alpha = header.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ||
               header.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA || spng_get_trns(ctx.get(), &transparency) == 0;
  p.opaque = !alpha;
  std::size_t size = 0;
  if (int e = spng_decoded_image_size(ctx.get(), SPNG_FMT_RGBA8, &size))
    return failure(400, std::string("the PNG does not decode: ") + spng_strerror(e));
  p.pixels.resize(size);
  if (int e = spng_decode_image(ctx.get(), p.pixels.data(), size, SPNG_FMT_RGBA8, SPNG_DECODE_TRNS))
    return failure(400, std::string("the PNG does not decode: ") + spng_strerror(e));
  return p;
}

// Pixels as PNG wants them: RGB for an opaque picture, the rest as they are.
std::string encode_png(const picture& p) {
  std::vector<std::uint8_t> rgb;
  const std::uint8_t* data = p.pixels.data();
  std::size_t size = p.pixels.size();
  std::uint8_t color = p.channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE
                       : p.channels == 2 ? SPNG_COLOR_TYPE_GRAYSCALE_ALPHA
                                         : SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
  if (p.channels == 4 && p.opaque) {
    rgb.resize(p.pixels.size() / 4 * 3);
    for (std::size_t from = 0, to = 0; from < p.pixels.size(); from += 4, to += 3) {
      rgb[to] = p.pixels[from];
      rgb[to + 1] = p.pixels[from + 1];
      rgb[to + 2] = p.pixels[from + 2];
    }
    data = rgb.data();
    size = rgb.size();
    color = SPNG_COLOR_TYPE_TRUECOLOR;
  }
  spng_context ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  if (!ctx) throw std::bad_alloc();
  spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr header{};
  header.width = static_cast<std::uint32_t>(p.width);
  header.height = static_cast<std::uint32_t>(p.height);
  header.bit_depth = 8;
  header.color_type = color;
  spng_set_ihdr(ctx.get(), &header);
  if (int e = spng_encode_image(ctx.get(), data, size, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE))
    throw std::runtime_error(std::string("PNG encoding failed: ") + spng_strerror(e));
  std::size_t length = 0;
  int error = 0;
  std::unique_ptr<void, decltype(&std::free)> png(spng_get_png_buffer(ctx.get(), &length, &error), &std::free);
  if (!png) throw std::runtime_error(std::string("PNG encoding failed: ") + spng_strerror(error));
  return std::string(static_cast<const char*>(png.get()), length);
}

// --- JPEG, through TurboJPEG -------------------------------------------------

struct tj_closer {
  void operator()(void* handle) const noexcept { tjDestroy(handle); }
};
using tj_handle = std::unique_ptr<void, tj_closer>;

decoded decode_jpeg(std::string_view bytes) {
  tj_handle tj(tjInitDecompress());
  if (!tj) throw std::bad_alloc();
  auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  auto length = static_cast<unsigned long>(bytes.size());
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.get(), data, length, &width, &height, &subsampling, &colorspace) != 0)
    return failure(400, std::string("the JPEG does not decode: ") + tjGetErrorStr2(tj.get()));
  if (width <= 0 || height <= 0) return failure(400, "the JPEG does not decode: no size");
  if (too_big(static_cast<std::uint64_t>(width), static_cast<std::uint64_t>(height)))
    return failure(413, "the image is " + size_text(width, height) + ", over the limit of " +
                            std::to_string(max_image_pixels) + " pixels");
  picture p;
  p.width = width;
  p.height = height;
  p.pixels.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 4);
  // A warning (a file cut short, damaged data) fails too: no grey-filled guess.
  // A progressive JPEG of more than 500 scans is refused: thousands of tiny
  // scans make a small file that takes minutes to decode.
  if (tjDecompress2(tj.get(), data, length, p.pixels.data(), width, 0, height, TJPF_RGBA,
                    TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
    return failure(400, std::string("the JPEG does not decode: ") + tjGetErrorStr2(tj.get()));
  return p;
}

std::string encode_jpeg(picture p, int quality) {
  if (p.channels == 2) {  // grey and alpha: JPEG has no alpha
    for (std::size_t i = 0; i < p.pixels.size() / 2; ++i) p.pixels[i] = p.pixels[2 * i];
    p.pixels.resize(p.pixels.size() / 2);
    p.channels = 1;
  }
  tj_handle tj(tjInitCompress());
  if (!tj) throw std::bad_alloc();
  unsigned char* jpeg = nullptr;
  unsigned long length = 0;
  bool grey = p.channels == 1;
  if (tjCompress2(tj.get(), p.pixels.data(), p.width, 0, p.height, grey ? TJPF_GRAY : TJPF_RGBA, &jpeg, &length,
                  grey ? TJSAMP_GRAY : TJSAMP_420, quality, 0) != 0) {
    tjFree(jpeg);
    throw std::runtime_error(std::string("JPEG encoding failed: ") + tjGetErrorStr2(tj.get()));
  }
  std::string out(reinterpret_cast<const char*>(jpeg), length);
  tjFree(jpeg);
  return out;
}

// --- pixel work -----------------------------------------------------------------

std::uint8_t clamp_byte(float value) { return static_cast<std::uint8_t>(std::clamp(value + 0.5f, 0.0f, 255.0f)); }

// For resizing one axis from `in` samples to `out`: each output sample is a
// weighted sum of the input samples under a triangle (linear) filter, widened
// by the scale when shrinking, so that every input sample counts.
struct taps {
  int first = 0;
  std::vector<float> weights;
};

std::vector<taps> filter_taps(int in, int out) {
  double scale = static_cast<double>(out) / in;
  double support = scale < 1 ? 1 / scale : 1;
  std::vector<taps> all(static_cast<std::size_t>(out));
  for (int o = 0; o < out; ++o) {
    double center = (o + 0.5) / scale;
    int first = std::max(0, static_cast<int>(std::floor(center - support)));
    int last = std::min(in - 1, static_cast<int>(std::ceil(center + support)));
    taps& t = all[static_cast<std::size_t>(o)];
    t.first = first;
    double sum = 0;
    for (int i = first; i <= last; ++i) {
      double w = std::max(0.0, 1 - std::abs(i + 0.5 - center) / support);
      t.weights.push_back(static_cast<float>(w));
      sum += w;
    }
    if (sum == 0) {  // the center falls between samples at an edge: take the nearest
      t.first = std::clamp(static_cast<int>(center), 0, in - 1);
      t.weights.assign(1, 1.0f);
      continue;
    }
    for (float& w : t.weights) w = static_cast<float>(w / sum);
  }
  return all;
}

// Resizes along x (horizontal) or y.
void resize_axis(picture& p, int out, bool horizontal) {
  int in = horizontal ? p.width : p.height;
  if (in == out) return;
  std::vector<taps> t = filter_taps(in, out);
  int c = p.channels;
  int width = horizontal ? out : p.width, height = horizontal ? p.height : out;
  std::vector<std::uint8_t> result(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) *
                                   static_cast<std::size_t>(c));
  std::array<float, 4> sum{};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const taps& tap = t[static_cast<std::size_t>(horizontal ? x : y)];
      sum.fill(0);
      for (std::size_t k = 0; k < tap.weights.size(); ++k) {
        int sx = horizontal ? tap.first + static_cast<int>(k) : x;
        int sy = horizontal ? y : tap.first + static_cast<int>(k);
        const std::uint8_t* px = &p.pixels[(static_cast<std::size_t>(sy) * static_cast<std::size_t>(p.width) +
                                            static_cast<std::size_t>(sx)) * static_cast<std::size_t>(c)];
        for (int ch = 0; ch < c; ++ch) sum[static_cast<std::size_t>(ch)] += tap.weights[k] * px[ch];
      }
      std::uint8_t* to = &result[(static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
                                  static_cast<std::size_t>(x)) * static_cast<std::size_t>(c)];
      for (int ch = 0; ch < c; ++ch) to[ch] = clamp_byte(sum[static_cast<std::size_t>(ch)]);
    }
  p.pixels = std::move(result);
  p.width = width;
  p.height = height;
}

// One box blur of `radius` along a line of `count` samples, `stride` bytes
// apart, each channel on its own; samples past the ends repeat the edge.
void box_line(std::uint8_t* line, int count, std::size_t stride, int channels, int radius,
              std::vector<std::uint8_t>& copy) {
  copy.resize(static_cast<std::size_t>(count) * static_cast<std::size_t>(channels));
  for (int i = 0; i < count; ++i)
    for (int ch = 0; ch < channels; ++ch)
      copy[static_cast<std::size_t>(i * channels + ch)] = line[static_cast<std::size_t>(i) * stride + static_cast<std::size_t>(ch)];
  auto at = [&](int i, int ch) -> int {
    return copy[static_cast<std::size_t>(std::clamp(i, 0, count - 1) * channels + ch)];
  };
  int window = 2 * radius + 1;
  for (int ch = 0; ch < channels; ++ch) {
    int sum = 0;
    for (int i = -radius; i <= radius; ++i) sum += at(i, ch);
    for (int i = 0; i < count; ++i) {
      line[static_cast<std::size_t>(i) * stride + static_cast<std::size_t>(ch)] =
          static_cast<std::uint8_t>((sum + window / 2) / window);
      sum += at(i + radius + 1, ch) - at(i - radius, ch);
    }
  }
}

}  // namespace

void resize(picture& p, int width, int height) {
  // The smaller of the two intermediate images first: at most the geometric
  // mean of the input and the output.
  if (static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(p.height) <=
      static_cast<std::uint64_t>(p.width) * static_cast<std::uint64_t>(height)) {
    resize_axis(p, width, true);
    resize_axis(p, height, false);
  } else {
    resize_axis(p, height, false);
    resize_axis(p, width, true);
  }
}

// Three box blurs each way: close to a Gaussian of standard deviation `radius`.
void blur(picture& p, int radius) {
  if (radius <= 0) return;
  std::vector<std::uint8_t> copy;
  auto c = static_cast<std::size_t>(p.channels);
  auto w = static_cast<std::size_t>(p.width);
  for (int pass = 0; pass < 3; ++pass) {
    for (int y = 0; y < p.height; ++y)
      box_line(&p.pixels[static_cast<std::size_t>(y) * w * c], p.width, c, p.channels, radius, copy);
    for (int x = 0; x < p.width; ++x)
      box_line(&p.pixels[static_cast<std::size_t>(x) * c], p.height, w * c, p.channels, radius, copy);
  }
}

void enhance(picture& p) {
  std::array<std::array<std::uint8_t, 256>, 3> table{};
  const float scale[3] = {1.2f, 1.1f, 0.9f};
  for (int ch = 0; ch < 3; ++ch)
    for (int v = 0; v < 256; ++v)
      table[static_cast<std::size_t>(ch)][static_cast<std::size_t>(v)] = clamp_byte(std::min(255.0f, v * scale[ch]));
  if (p.channels != 4) return;  // grey already: nothing to scale
  for (std::size_t i = 0; i < p.pixels.size(); i += 4)
    for (std::size_t ch = 0; ch < 3; ++ch) p.pixels[i + ch] = table[ch][p.pixels[i + ch]];
}

void to_grayscale(picture& p) {
  if (p.channels != 4) return;
  int out = p.opaque ? 1 : 2;
  std::size_t n = p.pixels.size() / 4;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* px = &p.pixels[4 * i];
    // BT.601 luma, 0.299 R + 0.587 G + 0.114 B, in 16-bit fixed point (a shift, not a division).
    auto y = static_cast<std::uint8_t>((19595 * px[0] + 38470 * px[1] + 7471 * px[2] + 32768) >> 16);
    std::uint8_t alpha = px[3];
    p.pixels[static_cast<std::size_t>(out) * i] = y;
    if (out == 2) p.pixels[2 * i + 1] = alpha;
  }
  p.pixels.resize(n * static_cast<std::size_t>(out));
  p.channels = out;
}

json image_edits::to_json() const {
  return {{"width", width}, {"height", height}, {"blur", blur}, {"enhance", enhance},
          {"grayscale", grayscale}, {"format", format}, {"quality", quality}};
}

image_edits image_edits::from_json(const json& j) {
  image_edits e;
  e.width = j.at("width").get<int>();
  e.height = j.at("height").get<int>();
  e.blur = j.at("blur").get<int>();
  e.enhance = j.at("enhance").get<bool>();
  e.grayscale = j.at("grayscale").get<bool>();
  e.format = j.at("format").get<std::string>();
  e.quality = j.at("quality").get<int>();
  return e;
}

std::optional<image_edits> parse_edits(const crew::url_search_params& query, std::string_view accept,
                                       std::string& error) {
  static constexpr std::string_view known[] = {"resize", "blur", "enhance", "grayscale", "format", "quality"};
  for (const auto& [name, value] : query) {
    if (std::find(std::begin(known), std::end(known), name) == std::end(known)) {
      error = "unknown operation '" + name + "': use resize=WxH, blur=R, enhance, grayscale, format=png|jpeg, quality=Q";
      return std::nullopt;
    }
  }
  image_edits e;
  if (auto size = query.get("resize")) {
    std::string_view text = *size;
    std::size_t x = text.find('x');
    if (x == std::string_view::npos || !parse_number(text.substr(0, x), 1, 16384, e.width) ||
        !parse_number(text.substr(x + 1), 1, 16384, e.height)) {
      error = "resize must be WxH, each side 1 to 16384 pixels";
      return std::nullopt;
    }
  }
  if (auto radius = query.get("blur"); radius && !parse_number(*radius, 1, 100, e.blur)) {
    error = "blur must be a radius from 1 to 100 pixels";
    return std::nullopt;
  }
  if (auto q = query.get("quality"); q && !parse_number(*q, 1, 100, e.quality)) {
    error = "quality must be 1 to 100";
    return std::nullopt;
  }
  e.enhance = query.has("enhance");
  e.grayscale = query.has("grayscale");
  if (e.width == 0 && e.blur == 0 && !e.enhance && !e.grayscale) e.enhance = true;  // the seeds' service
  if (auto format = query.get("format")) {
    if (*format == "png") e.format = "png";
    else if (*format == "jpeg" || *format == "jpg") e.format = "jpeg";
    else {
      error = "format must be png or jpeg";
      return std::nullopt;
    }
  } else {  // the first of the two that Accept names
    std::size_t png = accept.find("image/png"), jpeg = accept.find("image/jpeg");
    if (png != std::string_view::npos && (jpeg == std::string_view::npos || png < jpeg)) e.format = "png";
    else if (jpeg != std::string_view::npos) e.format = "jpeg";
  }
  return e;
}

image_answer process_image(std::string_view bytes, const image_edits& edits) {
  bool png = bytes.size() >= 8 && bytes.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8);
  bool jpeg = bytes.size() >= 3 && bytes.substr(0, 3) == std::string_view("\xff\xd8\xff", 3);
  if (!png && !jpeg) return failure(415, "not a PNG or JPEG image");
  if (edits.width && too_big(static_cast<std::uint64_t>(edits.width), static_cast<std::uint64_t>(edits.height)))
    return failure(413, "resize to " + size_text(edits.width, edits.height) + " is over the limit of " +
                            std::to_string(max_image_pixels) + " pixels");
  decoded in = png ? decode_png(bytes) : decode_jpeg(bytes);
  if (auto* refused = std::get_if<image_answer>(&in)) return std::move(*refused);
  picture& p = std::get<picture>(in);
  if (edits.width) resize(p, edits.width, edits.height);
  blur(p, edits.blur);
  if (edits.enhance) enhance(p);
  if (edits.grayscale) to_grayscale(p);
  std::string format = edits.format.empty() ? (png ? "png" : "jpeg") : edits.format;
  if (format == "png") return {200, "image/png", encode_png(p)};
  return {200, "image/jpeg", encode_jpeg(std::move(p), edits.quality)};
}

}  // namespace crew_server
