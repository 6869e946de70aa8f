// /process-image's image work: PNG and JPEG in and out, and the operations a
// query asks for. The codecs are Debian's libspng (PNG) and libjpeg-turbo's
// TurboJPEG API (JPEG); see docs/crew-server.md for why these two. Everything
// here runs on a thread of the worker's pool, except parse_edits, which checks
// the query on the loop before the work is queued.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <crew/message.hpp>
#include <crew/url.hpp>

namespace crew_server {

/// Images larger than this (width x height) get 413, before they are decoded;
/// so do resize targets. 4096 x 4096: 64 MiB of pixels at most, per request.
inline constexpr std::uint64_t max_image_pixels = 4096ull * 4096;

/// What the query asks of an image, in the order it is done:
///   resize=WxH   each side 1..16384, and W x H within max_image_pixels
///   blur=R       a Gaussian-like blur of radius R (1..100 pixels)
///   enhance      the seeds' colour scaling: r x 1.2, g x 1.1, b x 0.9 (at most 255)
///   grayscale    luma (BT.601), encoded as a grey image
///   format=png|jpeg  the output's format (else Accept's, else the input's)
///   quality=Q    JPEG quality 1..100 (default 90)
/// With none of resize, blur, enhance and grayscale, the seeds' scaling is done
/// (the service's one operation in the seeds).
struct image_edits {
  int width = 0, height = 0;  // 0: no resize
  int blur = 0;
  bool enhance = false;
  bool grayscale = false;
  std::string format;  // "png", "jpeg", or "" for the input's
  int quality = 90;

  crew::message::value_type to_json() const;
  static image_edits from_json(const crew::message::value_type& j);
};

/// The query (and the Accept header) as edits, or the reason they are refused
/// (a 400's message).
std::optional<image_edits> parse_edits(const crew::url_search_params& query, std::string_view accept,
                                       std::string& error);

/// An answer of the image service: a status, a content type and a body (the
/// encoded image, or a JSON error).
struct image_answer {
  int status = 200;
  std::string content_type;
  std::string body;
};

/// On a pool thread: decodes `bytes` (PNG or JPEG, told by their first bytes),
/// applies `edits`, and encodes the result. 415 for bytes that are neither
/// format, 400 for an image that does not decode, 413 past max_image_pixels.
image_answer process_image(std::string_view bytes, const image_edits& edits);

/// Pixels, 8 bits a channel: 4 channels (RGBA) or 1 (grey). Public for tests.
struct picture {
  int width = 0, height = 0, channels = 4;
  bool opaque = true;  // no pixel is see-through (a JPEG, a PNG without alpha)
  std::vector<std::uint8_t> pixels;  // rows top to bottom, no padding
};

void resize(picture& p, int width, int height);
void blur(picture& p, int radius);
void enhance(picture& p);
void to_grayscale(picture& p);

}  // namespace crew_server
