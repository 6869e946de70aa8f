// Node's side of `spawn`: sequential spawn-and-exit of /bin/true.
//   spawn_rate  per_s  --count N; with --hold-mib M the process first makes M MiB resident
'use strict';
const { spawn } = require('node:child_process');
const { integer, report } = require('./args');

const count = integer('count', 2000);
const holdMib = integer('hold-mib', 0);
const held = holdMib > 0 ? Buffer.allocUnsafeSlow(holdMib * 1048576).fill(1) : null;

let done = 0;
const start = process.hrtime.bigint();
function next() {
  spawn('/bin/true', [], { stdio: 'ignore' }).on('exit', () => {
    if (++done < count) return next();
    report('spawn_rate', count / (Number(process.hrtime.bigint() - start) / 1e9), 'per_s');
    if (held && held[0] !== 1) process.exitCode = 1;
  });
}
next();
