// expect: GCC 12: name the message first
// GCC 12 cannot compile a braced JSON list inside co_await ("array used as initializer").
#include <crew/crew.hpp>

crew::task<bool> add(crew::child_process& child) {
  crew::result<crew::message> reply = co_await child.request({{"op", "add"}, {"a", 1}, {"b", 2}});
  co_return reply.has_value();
}
