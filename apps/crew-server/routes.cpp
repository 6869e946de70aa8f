#include "routes.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <random>


namespace crew_server {
namespace {

using json = crew::message::value_type;

// The time as JavaScript's toISOString() writes it: 2026-11-23T07:30:00.123Z.
std::string iso_time() {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(millis));
  return text;
}

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

// On a pool thread: the request body in, {status, body} out.
json process_image(const std::string& body) {
  json input = json::parse(body, nullptr, false);
  if (input.is_discarded() || !input.is_object() || !input.contains("imageData") || !input["imageData"].is_array())
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

bool charset_name(const std::string& name) {
  if (name.empty() || name.size() > 40) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != ':') return false;
  return true;
}

constexpr std::size_t max_converted = 16 << 20;  // bytes of output kept; past this, the conversion fails

}  // namespace

services::services(crew::ipc_channel* primary, std::size_t pool_threads, std::size_t pool_queue)
    : pool_({{"heavy", [](crew::message) { return heavy(); }},
             {"process-image", [](crew::message body) { return process_image(body.value().get_ref<const std::string&>()); }}},
            {.min_threads = 1, .max_threads = pool_threads, .max_queue = pool_queue}),
      primary_(primary) {}

// Runs the task on the worker's pool and answers with what it gives ({status, body}).
void services::on_pool(const char* task, crew::message in, crew::http::response& res) {
  pool_.run(std::move(in), {.task = task}, [res = std::move(res)](crew::result<crew::message> out) mutable {
    if (out.error() == crew::errc::queue_full)
      return res.status(503).set_header("Retry-After", "1").json({{"error", "busy: try again"}});
    if (!out) return res.status(500).json({{"error", crew::error_name(out.error())}});
    json& answer = out->value();
    res.status(answer["status"].get<int>()).json(answer["body"]);
  });
}

crew::http::router services::router() {
  crew::http::router routes;
  routes.get("/", [](crew::http::request&, crew::http::response& res) {
    res.json({{"message", "Hello from worker"}, {"pid", getpid()}, {"timestamp", iso_time()}});
  });

  routes.get("/heavy", [this](crew::http::request&, crew::http::response& res) { on_pool("heavy", nullptr, res); });
  routes.post("/process-image", [this](crew::http::request& req, crew::http::response& res) {
    on_pool("process-image", std::move(req.body), res);
  });

  routes.post("/convert", [this](crew::http::request& req, crew::http::response& res) { convert(req, res); });

  routes.get("/system-info", [](crew::http::request&, crew::http::response& res) {
    crew::exec("ps aux | head -10", {}, [res = std::move(res)](crew::exec_result r) mutable {
      if (!r.ok()) {
        std::string why = r.error ? crew::error_name(r.error) : "exit code " + std::to_string(r.status.code);
        return res.status(500).json({{"error", "ps aux failed: " + why}, {"details", r.err}});
      }
      res.json({{"processes", r.out}, {"timestamp", iso_time()}});
    });
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
