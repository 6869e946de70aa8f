// Node's side of `pipe`: reading a child's stdout.
//   pipe_throughput  MB_per_s  a child (head -c) writes --mib N MiB of zeros; we read them all
'use strict';
const { spawn } = require('node:child_process');
const { integer, report } = require('./args');

const mib = integer('mib', 1024);
let received = 0;
const start = process.hrtime.bigint();
const child = spawn('head', ['-c', String(mib * 1048576), '/dev/zero'], { stdio: ['ignore', 'pipe', 'ignore'] });
child.stdout.on('data', (chunk) => { received += chunk.length; });
child.on('close', () => {
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  report('pipe_throughput', received / 1e6 / seconds, 'MB_per_s');
});
