// Workload `fork-ipc`: messages with a forked crew child over Node's IPC protocol.
//   ipc_roundtrip  us        one small message there and back, --count N times in sequence
//   ipc_one_way    msg_per_s N*10 small JSON objects parent to child, until the child has them all
//   ipc_roundtrip_nospin us  the round trip with ipc_options::spin = 0 on both sides (sleep between messages)
// The child is crew-bench itself, re-executed as `crew-bench fork-ipc-child`.
#include <string>

#include "crew/child_process.hpp"
#include "workload.hpp"

namespace crew::bench {

using json = message::value_type;

int fork_ipc_child(const options& opts) {
  ipc_channel* parent = parent_channel();
  if (!parent) return 2;
  if (opts.text("spin", "default") == "off") parent->set_spin(std::chrono::microseconds(0));
  long expected = -1, received = 0;
  parent->on_message([&](message m) {
    const json& v = m.value();
    if (v.contains("ping")) {
      parent->send(std::move(m));
    } else if (v.contains("expect")) {
      expected = v["expect"].get<long>();
      received = 0;
    } else if (++received == expected) {
      parent->send(json{{"got", received}});
    }
  });
  loop::current().run();
  return 0;
}

double roundtrip_without_spin(long count) {
  crew::loop loop;
  child_process child = fork("/proc/self/exe", {"fork-ipc-child", "--spin", "off"}, {.ipc = {.spin = {}}}, loop);
  long remaining = count;
  clock::time_point start = clock::now();
  double us = 0;
  child.on_message([&](message) {
    if (--remaining > 0) return void(child.send(json{{"ping", remaining}}));
    us = seconds_since(start) / count * 1e6;
    child.disconnect();
  });
  child.send(json{{"ping", remaining}});
  loop.run();
  return us;
}

int fork_ipc(const options& opts) {
  long count = opts.integer("count", 20000);
  crew::loop loop;
  child_process child = fork("/proc/self/exe", {"fork-ipc-child"}, {}, loop);

  long remaining = count;
  long one_way = count * 10;
  clock::time_point start;
  double roundtrip_us = 0;
  child.on_message([&](message m) {
    if (m.value().contains("ping")) {
      if (--remaining > 0) return void(child.send(json{{"ping", remaining}}));
      roundtrip_us = seconds_since(start) / count * 1e6;
      // Then the one-way burst: announce it, send it, wait for the child's count.
      child.send(json{{"expect", one_way}});
      start = clock::now();
      for (long i = 0; i < one_way; ++i) {
        json item;  // Node's {i, name: 'item', ok: true}; operator[] builds it twice as fast as an initializer list
        item["i"] = i;
        item["name"] = "item";
        item["ok"] = true;
        child.send(std::move(item));
      }
    } else if (m.value().contains("got")) {
      report("ipc_roundtrip", roundtrip_us, "us");
      report("ipc_one_way", one_way / seconds_since(start), "msg_per_s");
      child.disconnect();
      report("ipc_roundtrip_nospin", roundtrip_without_spin(count), "us");
    }
  });
  start = clock::now();
  child.send(json{{"ping", remaining}});
  loop.run();
  return 0;
}

}  // namespace crew::bench
