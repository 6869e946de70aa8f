// rpc-child: rpc-parent's crew child, the twin of rpc-child.js. Answers each
// {id, op: "add", a, b} with {id, result: a + b} (anything else with {id, error});
// exits when its parent disconnects.
//
//   process.on('message', (m) => process.send({id: m.id, result: m.a + m.b}));
#include <crew/crew.hpp>

#include <cstdio>

using json = crew::message::value_type;

// JSON numbers are doubles, as JavaScript's are: 1e300 and 1.9 add as they do in Node.
struct add_request {
  std::string op;
  double a = 0, b = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(add_request, op, a, b)

int main() {
  crew::ipc_channel* parent = crew::parent_channel();
  if (!parent) {
    std::fprintf(stderr, "rpc-child: start me with rpc-parent\n");
    return 2;
  }
  parent->on_message([parent](crew::message m) {
    json reply = {{"id", m.value().is_object() ? m.value().value("id", json()) : json()}};
    if (auto add = m.try_get<add_request>(); add && add->op == "add")
      reply["result"] = add->a + add->b;
    else
      reply["error"] = "expected {op: \"add\", a, b}";
    parent->send(reply);
  });
  crew::loop::current().run();
}
