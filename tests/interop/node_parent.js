// A Node parent talks to a crew child (ipc-echo) over Node's own IPC channel:
// every JSON shape comes back unchanged, a 16 MiB message, a burst of 100,000,
// and a handle (a listening TCP server) crosses to crew and back.
// Usage: node node_parent.js PATH_TO_IPC_ECHO      Exit status 0 when all pass.
'use strict';
const { spawn } = require('node:child_process');
const net = require('node:net');
const assert = require('node:assert');

const child = spawn(process.argv[2], [], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
const waiting = [];
child.on('message', (message, handle) => waiting.shift()(message, handle));
const roundTrip = (message, handle) =>
  new Promise((resolve) => { waiting.push((m, h) => resolve([m, h])); child.send(message, handle); });

function nested(depth) {
  let value = 'core';
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { d: value };
  return value;
}

const shapes = [
  null, true, false, 0, -1, 1.5, 1e300, -2.5e-300, 9007199254740991, '',
  'plain', 'quote " backslash \\ slash /', 'controls \b\f\n\r\t \u0001 \u001f',
  'line separators \u2028 \u2029', 'beyond the BMP \u{1F600} \u{10FFFF}', 'accents é ü ñ 日本',
  [], {}, [1, 'two', [3, [4, [5]]]], { b: 1, a: 2, nested: { z: [], y: {} } },
  { cmd: 'NOT_NODE_internal' }, nested(500),
];

async function main() {
  for (const shape of shapes) {
    const [back] = await roundTrip(shape);
    assert.deepStrictEqual(back, shape);
    assert.strictEqual(JSON.stringify(back), JSON.stringify(shape), 'key order kept');
  }

  const big = { blob: 'x'.repeat(16 * 1024 * 1024 - 20) };
  const [bigBack] = await roundTrip(big);
  assert.strictEqual(bigBack.blob.length, big.blob.length);

  const count = 100000;
  let next = 0;
  const burst = new Promise((resolve) => {
    waiting.push(function onBurst(m) {  // one listener for the whole burst
      assert.strictEqual(m.i, next++, 'order kept');
      if (next === count) resolve();
      else waiting.unshift(onBurst);
    });
  });
  for (let i = 0; i < count; i++) child.send({ i });
  await burst;

  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.on('listening', resolve));
  const [handled, handle] = await roundTrip({ port: server.address().port }, server);
  assert.strictEqual(handled.port, server.address().port);
  assert.ok(handle, 'the handle came back from crew');
  const [after] = await roundTrip('after the handle');  // Node holds this until crew ACKed
  assert.strictEqual(after, 'after the handle');
  server.close();

  child.disconnect();
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.strictEqual(code, 0, 'ipc-echo exits 0 when the channel closes');
  console.log('node parent <-> crew child: all passed');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
