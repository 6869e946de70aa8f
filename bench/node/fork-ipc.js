// Node's side of `fork-ipc`: messages with a forked Node child.
//   ipc_roundtrip  us        one small message there and back, --count N times in sequence
//   ipc_one_way    msg_per_s N*10 small JSON objects parent to child, until the child has them all
'use strict';
const { fork } = require('node:child_process');
const { integer, report } = require('./args');

if (process.argv[2] === 'child') {
  let expected = -1;
  let received = 0;
  process.on('message', (m) => {
    if (m.ping !== undefined) process.send(m);
    else if (m.expect !== undefined) { expected = m.expect; received = 0; }
    else if (++received === expected) process.send({ got: received });
  });
  return;
}

const count = integer('count', 20000);
const oneWay = count * 10;
const child = fork(__filename, ['child']);
let remaining = count;
let start = process.hrtime.bigint();
let roundtripUs = 0;
const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;

child.on('message', (m) => {
  if (m.ping !== undefined) {
    if (--remaining > 0) return child.send({ ping: remaining });
    roundtripUs = (seconds() / count) * 1e6;
    child.send({ expect: oneWay });
    start = process.hrtime.bigint();
    for (let i = 0; i < oneWay; i++) child.send({ i, name: 'item', ok: true });
  } else if (m.got !== undefined) {
    report('ipc_roundtrip', roundtripUs, 'us');
    report('ipc_one_way', oneWay / seconds(), 'msg_per_s');
    child.disconnect();
  }
});
child.send({ ping: remaining });
