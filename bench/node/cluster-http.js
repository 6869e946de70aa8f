// Node's side of `cluster-http`: the seeds' cluster server (the primary forks
// the workers, each answers "hello from worker <pid>"), under wrk with
// bench/wrk/figures.lua; then one worker killed and replaced at once, as the
// seeds do in 'exit'.
//   --workers N (2)  --policy rr|shared (rr: Node's default)  --connections C (64)
//   --seconds S (5)  --threads T (2)  --keep-alive yes|no (yes)
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { integer, report, text } = require('./args');

cluster.schedulingPolicy = text('policy', 'rr') === 'shared' ? cluster.SCHED_NONE : cluster.SCHED_RR;

if (cluster.isWorker) {
  const hello = `hello from worker ${process.pid}\n`;
  http.createServer((req, res) => res.end(hello)).listen(0, '127.0.0.1');
  return;
}

const workers = integer('workers', 2);
const args = ['-t', String(integer('threads', 2)), '-c', String(integer('connections', 64)),
  '-d', `${integer('seconds', 5)}s`, '-s', path.join(__dirname, '..', 'wrk', 'figures.lua')];
if (text('keep-alive', 'yes') === 'no') args.push('-H', 'Connection: close');

let listening = 0;
let killedAt = 0n;
cluster.on('exit', (worker) => { if (!worker.exitedAfterDisconnect) cluster.fork(); });
cluster.on('listening', (worker, address) => {
  if (killedAt) {
    report('worker_replace', Number(process.hrtime.bigint() - killedAt) / 1e6, 'ms');
    cluster.disconnect();
    return;
  }
  if (++listening < workers) return;
  const wrk = spawn('wrk', [...args, `http://127.0.0.1:${address.port}/`]);
  let out = '';
  wrk.stdout.on('data', (d) => { out += d; });
  wrk.on('close', () => {
    for (const line of out.split('\n')) if (/^[a-z_0-9]+ [0-9.]+ [a-z_]+$/.test(line)) console.log(line);
    killedAt = process.hrtime.bigint();
    Object.values(cluster.workers)[0].process.kill('SIGKILL');
  });
});
for (let i = 0; i < workers; i++) cluster.fork();
