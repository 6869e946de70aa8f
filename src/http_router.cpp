// Routing by method and path: exact, or a prefix ending in a star.
#include "crew/http.hpp"

namespace crew::http {

router& router::route(std::string method, std::string path, handler h, route_options options) {
  any_streams_ = any_streams_ || options.stream_body;
  routes_.push_back({std::move(method), std::move(path), std::move(h), options});
  return *this;
}

namespace {

// How well `route` matches `path`: 0 not at all; a star route by the length
// of its prefix; an exact route above any star.
std::size_t match(std::string_view route, std::string_view path) noexcept {
  if (route == path) return std::string_view::npos;
  if (!route.ends_with('*')) return 0;
  route.remove_suffix(1);
  return path.starts_with(route) ? route.size() + 1 : 0;
}

}  // namespace

std::size_t router::find(const request& req) const noexcept {
  std::size_t best = routes_.size(), best_match = 0;
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const entry& e = routes_[i];
    if (e.method != req.method && !(req.method == "HEAD" && e.method == "GET")) continue;
    if (std::size_t m = match(e.path, req.path); m > best_match) {
      best = i;
      best_match = m;
    }
  }
  return best;
}

bool router::streams(const request& req) const noexcept {
  if (!any_streams_) return false;
  std::size_t i = find(req);
  return i < routes_.size() && routes_[i].options.stream_body;
}

void router::operator()(request& req, response& res) {
  if (std::size_t i = find(req); i < routes_.size()) return routes_[i].h(req, res);
  std::string allow;
  for (const entry& e : routes_)
    if (match(e.path, req.path) && allow.find(e.method) == std::string::npos)
      allow += allow.empty() ? e.method : ", " + e.method;
  if (allow.empty()) return res.status(404).send("Not Found\n");
  res.status(405).set_header("Allow", allow).send("Method Not Allowed\n");
}

}  // namespace crew::http
