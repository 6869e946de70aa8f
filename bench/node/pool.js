// piscina's side of crew's `pool` workload: tiny tasks (an integer in, the next
// integer out) on a pool of W worker threads.
//   pool_tasks_per_s        per_s  N tasks, K in flight at a time (each result sends the next)
//   pool_serial_latency_us  us     one task at a time, there and back: mean of N / 10
//   process_pool_*          the same figures again: piscina has no pool of processes
'use strict';
const path = require('node:path');
const Piscina = require('piscina');
const { integer, report } = require('./args');

const tasks = integer('tasks', 1000000);
const workers = integer('workers', 2);
const inFlight = integer('in-flight', 1024);

(async () => {
  const pool = new Piscina({ filename: path.join(__dirname, 'pool-task.js'), minThreads: workers, maxThreads: workers });
  await Promise.all(Array.from({ length: workers }, () => pool.run(0))); // threads up, as crew's are
  let sent = 0;
  let sum = 0;
  let start = process.hrtime.bigint();
  await new Promise((resolve) => {
    let done = 0;
    const send = () => {
      pool.run(sent++).then((value) => {
        sum += value;
        if (++done === tasks) resolve();
        else if (sent < tasks) send();
      });
    };
    for (let i = 0; i < Math.min(inFlight, tasks); i++) send();
  });
  const throughput = Number(process.hrtime.bigint() - start) / 1e9;
  report('pool_tasks_per_s', tasks / throughput, 'per_s');
  if (sum !== (tasks * (tasks + 1)) / 2) console.error(`pool: wrong sum ${sum}`);

  const serial = Math.max(1, Math.floor(tasks / 10));
  start = process.hrtime.bigint();
  for (let i = serial; i > 0; i--) await pool.run(i);
  const latency = Number(process.hrtime.bigint() - start) / 1e3 / serial;
  report('pool_serial_latency_us', latency, 'us');
  await pool.destroy();
  // piscina has no pool of processes: its threads are the peer of crew's process pool too.
  report('process_pool_tasks_per_s', tasks / throughput, 'per_s');
  report('process_pool_serial_latency_us', latency, 'us');
})();
