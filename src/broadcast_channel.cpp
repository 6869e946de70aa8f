#include "crew/broadcast_channel.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "detail/port_core.hpp"

namespace crew {
namespace {

// The open channels of the process, by name. A sender copies the list under the
// registry lock and pushes to each queue after releasing it (one lock at a time).
struct registry {
  std::mutex mutex;
  std::map<std::string, std::vector<std::shared_ptr<detail::port_core>>, std::less<>> channels;  // guarded

  static registry& instance() {
    static registry* r = new registry;  // never destroyed: channels may close during static destruction
    return *r;
  }
};

}  // namespace

broadcast_channel::broadcast_channel(std::string name)
    : name_(std::move(name)), port_(std::make_shared<detail::port_core>()) {
  registry& r = registry::instance();
  std::lock_guard lock(r.mutex);
  r.channels[name_].push_back(port_.core_);
}

broadcast_channel::broadcast_channel(broadcast_channel&&) noexcept = default;

broadcast_channel& broadcast_channel::operator=(broadcast_channel&& other) noexcept {
  if (this != &other) {
    close();
    name_ = std::move(other.name_);
    port_ = std::move(other.port_);
  }
  return *this;
}

broadcast_channel::~broadcast_channel() { close(); }

std::error_code broadcast_channel::post_message(const message& m) {
  if (!port_.core_) return errc::closed_message_port;
  if (!m.ports().empty()) return errc::data_clone_error;  // m is const: no allocation
  std::vector<std::shared_ptr<detail::port_core>> receivers;
  {
    registry& r = registry::instance();
    std::lock_guard lock(r.mutex);
    if (auto it = r.channels.find(name_); it != r.channels.end()) receivers = it->second;
  }
  for (const auto& core : receivers) {
    if (core == port_.core_) continue;
    core->push_copy(m);  // a channel closing meanwhile just misses it
  }
  return {};
}

void broadcast_channel::close() noexcept {
  if (!port_.core_) return;
  {
    registry& r = registry::instance();
    std::lock_guard lock(r.mutex);
    if (auto it = r.channels.find(name_); it != r.channels.end()) {
      std::erase(it->second, port_.core_);
      if (it->second.empty()) r.channels.erase(it);
    }
  }
  port_.close();
}

}  // namespace crew
