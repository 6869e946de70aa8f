// Node's nearest equivalent of crew's `queue_work`: tiny jobs on libuv's thread
// pool. User code cannot queue its own work there, so each job is the smallest
// pool-backed call Node has: crypto.pbkdf2 with one iteration.
//   queue_work_rate  per_s  N jobs, K in flight at a time
'use strict';
const crypto = require('node:crypto');
const { integer, report } = require('./args');

const count = integer('count', 200000);
const inFlight = integer('in-flight', 64);
let submitted = 0;
let completed = 0;
const start = process.hrtime.bigint();

function submit() {
  submitted++;
  crypto.pbkdf2('p', 's', 1, 8, 'sha256', (err) => {
    if (err) throw err;
    if (++completed === count) {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      report('queue_work_rate', count / seconds, 'per_s');
    } else if (submitted < count) {
      submit();
    }
  });
}

for (let i = 0; i < Math.min(inFlight, count); i++) submit();
