// Routing by method and exact path.
#include "crew/http.hpp"

namespace crew::http {

router& router::route(std::string method, std::string path, handler h, route_options options) {
  any_streams_ = any_streams_ || options.stream_body;
  routes_.push_back({std::move(method), std::move(path), std::move(h), options});
  return *this;
}

std::size_t router::find(const request& req) const noexcept {
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const entry& e = routes_[i];
    if (e.path == req.path && (e.method == req.method || (req.method == "HEAD" && e.method == "GET"))) return i;
  }
  return routes_.size();
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
    if (e.path == req.path) allow += allow.empty() ? e.method : ", " + e.method;
  if (allow.empty()) return res.status(404).send("Not Found\n");
  res.status(405).set_header("Allow", allow).send("Method Not Allowed\n");
}

}  // namespace crew::http
