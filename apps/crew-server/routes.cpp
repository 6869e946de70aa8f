#include "routes.hpp"

#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <random>
#include <sstream>

#include <crew/cluster.hpp>

#include "access_log.hpp"
#include "image.hpp"
#include "number.hpp"

namespace crew_server {
namespace {

using json = crew::message::value_type;

// Math.random()'s kind of generator: xorshift128+, doubles in [0, 1).
class random_numbers {
 public:
  random_numbers() : a_(std::random_device{}() | 1ull << 32), b_(std::random_device{}() | 1) {}
  double next() {
    std::uint64_t x = a_, y = b_;
    a_ = y;
    x ^= x << 23;
    b_ = x ^ y ^ (x >> 17) ^ (y >> 26);
    return static_cast<double>((b_ + y) >> 11) * 0x1.0p-53;
  }

 private:
  std::uint64_t a_, b_;
};

// A number as JavaScript writes it: 120, not 120.0.
json js_number(double x) {
  if (x == std::floor(x) && std::abs(x) < 0x1p53) return static_cast<std::int64_t>(x);
  return x;
}

// On a pool thread: 1e6 random additions.
json heavy() {
  auto start = std::chrono::steady_clock::now();
  static thread_local random_numbers random;
  double result = 0;
  for (int i = 0; i < 1'000'000; ++i) result += random.next();
  std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
  return {{"status", 200}, {"body", {{"result", result}, {"worker", getpid()}, {"duration", took.count()}}}};
}

// On a pool thread: the seeds' JSON pixels in, {status, body} out.
json scale_pixels(const std::string& body) {
  crew::result<crew::message> parsed = crew::message::parse(body);  // nesting past message::max_depth fails
  json input = parsed ? std::move(parsed->value()) : json();
  if (!input.is_object() || !input.contains("imageData") || !input["imageData"].is_array())
    return {{"status", 400}, {"body", {{"error", "expected {\"imageData\": [{\"r\":..,\"g\":..,\"b\":..}, ...]}"}}}};
  json result = json::array();
  for (const json& pixel : input["imageData"]) {
    auto channel = [&](const char* name, double scale) -> json {
      const json* value = pixel.is_object() && pixel.contains(name) ? &pixel[name] : nullptr;
      if (!value || !value->is_number()) return nullptr;
      return js_number(std::min(255.0, value->get<double>() * scale));
    };
    json r = channel("r", 1.2), g = channel("g", 1.1), b = channel("b", 0.9);
    if (r.is_null() || g.is_null() || b.is_null())
      return {{"status", 400}, {"body", {{"error", "every pixel needs numbers r, g and b"}}}};
    result.push_back({{"r", std::move(r)}, {"g", std::move(g)}, {"b", std::move(b)}});
  }
  return {{"status", 200}, {"body", {{"success", true}, {"result", std::move(result)}}}};
}

// `ps aux`'s table as JSON rows: one object per process, keyed by the
// header's names in lower case ("pid", "%cpu", "command"...). The last column
// (the command) keeps its spaces; numeric columns are numbers.
json process_rows(const std::string& table) {
  std::istringstream lines(table);
  std::string line;
  std::vector<std::string> names;
  if (std::getline(lines, line)) {
    std::istringstream words(line);
    for (std::string name; words >> name;) {
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      names.push_back(name);
    }
  }
  json rows = json::array();
  while (!names.empty() && std::getline(lines, line)) {
    json row = json::object();
    std::istringstream words(line);
    for (std::size_t i = 0; i + 1 < names.size(); ++i) {
      std::string word;
      if (!(words >> word)) break;
      double number = 0;
      auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), number);
      bool numeric = ec == std::errc{} && end == word.data() + word.size();
      row[names[i]] = numeric ? js_number(number) : json(word);
    }
    std::string rest;
    std::getline(words >> std::ws, rest);
    row[names.back()] = rest;
    rows.push_back(std::move(row));
  }
  return rows;
}

bool charset_name(const std::string& name) {
  if (name.empty() || name.size() > 40) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != ':') return false;
  return true;
}

constexpr std::size_t max_converted = 16 << 20;  // bytes of output kept; past this, the conversion fails
constexpr std::size_t max_image_upload = 32 << 20;  // bytes of an image (or JSON pixels); past this, 413

// On a pool thread: {edits, body} in, {status, type, body} out.
json edit_image(json& in) {
  image_answer a = process_image(in["body"].get_ref<const std::string&>(), image_edits::from_json(in["edits"]));
  return {{"status", a.status}, {"type", std::move(a.content_type)}, {"body", std::move(a.body)}};
}

}  // namespace

services::services(crew::ipc_channel* primary, std::size_t pool_threads, std::size_t pool_queue,
                   conversion_options videos)
    : pool_({{"heavy", [](crew::message) { return heavy(); }},
             {"scale-pixels", [](crew::message body) { return scale_pixels(body.value().get_ref<const std::string&>()); }},
             {"process-image", [](crew::message in) { return edit_image(in.value()); }}},
            {.min_threads = 1, .max_threads = pool_threads, .max_queue = pool_queue}),
      videos_(jobs_directory(), videos),
      primary_(primary),
      gauges_(primary, [this] { return pool_.stats().queue_size; }) {}

// Runs the task on the worker's pool and answers with what it gives:
// {status, body} answers with body as JSON, {status, type, body} with the bytes of body.
void services::on_pool(const char* task, crew::message in, crew::http::response& res) {
  pool_.run(std::move(in), {.task = task}, [res = std::move(res)](crew::result<crew::message> out) mutable {
    if (out.error() == crew::errc::queue_full)
      return res.status(503).set_header("Retry-After", "1").json({{"error", "busy: try again"}});
    if (!out) return res.status(500).json({{"error", crew::error_name(out.error())}});
    json& answer = out->value();
    res.status(answer["status"].get<int>());
    if (answer.contains("type"))
      res.send(std::move(answer["body"].get_ref<std::string&>()), answer["type"].get<std::string>());
    else
      res.json(answer["body"]);
  });
}

// The upload is read as it arrives, up to max_image_upload bytes: past that
// (or a Content-Length that says so) 413 at once, and the rest is not read.
// The edits are checked before the upload is read: a bad query is a 400 at once.
void services::image(crew::http::request& req, crew::http::response& res) {
  bool json_type = req.header("content-type").starts_with("application/json");
  std::string error;
  std::optional<image_edits> edits = parse_edits(req.search_params(), req.header("accept"), error);
  if (!edits) return res.status(400).json({{"error", error}});
  std::string too_big = "the upload is over " + std::to_string(max_image_upload >> 20) + " MiB";
  std::string_view length = req.header("content-length");
  std::size_t declared = 0;
  if (parse_number<std::size_t>(length, 0, SIZE_MAX, declared) && declared > max_image_upload)
    return res.status(413).json({{"error", too_big}});
  struct upload {
    crew::http::response res;
    std::string body;
    bool refused = false;
  };
  auto up = std::make_shared<upload>(upload{std::move(res), {}, false});
  req.on_data([up, too_big](std::string_view chunk) {
    if (up->refused) return;
    if (up->body.size() + chunk.size() > max_image_upload) {
      up->refused = true;
      up->body = std::string();
      up->res.status(413).json({{"error", too_big}});
      return;
    }
    up->body += chunk;
  });
  req.on_end([this, up, json_type, edits](std::error_code cut) {
    if (up->refused) return;
    if (cut) return up->res.status(400).json({{"error", "the upload was cut short: " + crew::error_name(cut)}});
    // The seeds' form: JSON by its type, or by its first character.
    std::size_t first = up->body.find_first_not_of(" \t\r\n");
    if (json_type || (first != std::string::npos && up->body[first] == '{'))
      return on_pool("scale-pixels", std::move(up->body), up->res);
    on_pool("process-image", json{{"edits", edits->to_json()}, {"body", std::move(up->body)}}, up->res);
  });
}

crew::http::router services::router() {
  crew::http::router routes;
  routes.get("/", [](crew::http::request&, crew::http::response& res) {
    res.json({{"message", "Hello from worker"}, {"pid", getpid()}, {"timestamp", iso_time()}});
  });

  routes.get("/heavy", [this](crew::http::request&, crew::http::response& res) { on_pool("heavy", nullptr, res); });
  routes.post(
      "/process-image", [this](crew::http::request& req, crew::http::response& res) { image(req, res); },
      {.stream_body = true});

  routes.post("/convert", [this](crew::http::request& req, crew::http::response& res) { convert(req, res); });

  routes.get("/system-info", [](crew::http::request& req, crew::http::response& res) {
    bool text = req.search_params().get("format") == "text";
    crew::exec("ps aux | head -10", {}, [res = std::move(res), text](crew::exec_result r) mutable {
      if (!r.ok()) {
        std::string why = r.error ? crew::error_name(r.error) : "exit code " + std::to_string(r.status.code);
        return res.status(500).json({{"error", "ps aux failed: " + why}, {"details", r.err}});
      }
      if (text) return res.send(std::move(r.out));
      res.json({{"processes", process_rows(r.out)}, {"timestamp", iso_time()}});
    });
  });

  routes.post(
      "/convert-video", [this](crew::http::request& req, crew::http::response& res) { videos_.upload(req, res); },
      {.stream_body = true});
  routes.get("/jobs/*", [this](crew::http::request& req, crew::http::response& res) { videos_.job(req, res); });
  routes.del("/jobs/*", [this](crew::http::request& req, crew::http::response& res) { videos_.job(req, res); });

  routes.get("/dashboard", [](crew::http::request&, crew::http::response& res) { serve_dashboard_page(res); });
  routes.get("/dashboard.js", [](crew::http::request&, crew::http::response& res) { serve_dashboard_script(res); });
  routes.get("/dashboard/events", [this](crew::http::request&, crew::http::response& res) {
    crew::task<> streaming = serve_dashboard_events(primary_, std::move(res));  // runs on alone
  });

  routes.get("/healthz", [](crew::http::request&, crew::http::response& res) { res.json({{"status", "ok"}}); });
  // 503 while the worker drains (a reload, a shutdown): a load balancer in front routes around it.
  routes.get("/readyz", [](crew::http::request&, crew::http::response& res) {
    if (crew::cluster::disconnecting()) return res.status(503).json({{"ready", false}, {"reason", "draining"}});
    res.json({{"ready", true}});
  });

  routes.get("/metrics", [this](crew::http::request&, crew::http::response& res) {
    crew::task<> answering = serve_metrics(primary_, std::move(res), pool_text(pool_.stats()));  // runs on alone
  });
  return routes;
}

// The body goes to iconv's stdin; what it writes on stdout is the answer.
void services::convert(crew::http::request& req, crew::http::response& res) {
  crew::url_search_params query = req.search_params();
  std::string from = query.get("from").value_or("ISO-8859-1");
  std::string to = query.get("to").value_or("UTF-8");
  if (!charset_name(from) || !charset_name(to))
    return res.status(400).json({{"error", "from and to must be charset names, as `iconv -l` lists them"}});
  auto& child = conversions_.emplace_back(crew::spawn("iconv", {"-f", from, "-t", to}));
  auto it = std::prev(conversions_.end());
  struct output {
    std::string out, err;
    std::error_code error;
    bool too_big = false;
  };
  auto o = std::make_shared<output>();
  child.out().on_data([o, &child](std::string_view chunk) {
    if (o->out.size() + chunk.size() > max_converted) {
      o->too_big = true;
      child.kill(SIGKILL);  // ESRCH: it has exited already
      return;
    }
    o->out += chunk;
  });
  child.err().on_data([o](std::string_view chunk) {
    if (o->err.size() < 64 * 1024) o->err += chunk;
  });
  child.on_error([o](std::error_code ec) { o->error = ec; });
  child.on_close([this, it, o, to, res = std::move(res)](crew::exit_status status) mutable {
    if (o->error)
      res.status(500).json({{"error", "Conversion failed: cannot run iconv: " + crew::error_name(o->error)}});
    else if (o->too_big)
      res.status(500).json({{"error", "Conversion failed: output over 16 MiB"}});
    else if (status.code != 0 || status.signal != 0)
      res.status(500).json({{"error", "Conversion failed"}, {"code", status.code}, {"details", o->err}});
    else
      res.send(std::move(o->out), "text/plain; charset=" + to);
    crew::loop::current().post([this, it] { conversions_.erase(it); });  // not from inside its own callback
  });
  child.in().on_error([](std::error_code) {});  // EPIPE when iconv stops early: its exit says why
  child.in().write(req.body);
  child.in().end();
}

}  // namespace crew_server
