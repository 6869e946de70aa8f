// Node's side of `worker`: worker_threads.
//   worker_startup    ms        from new Worker() to its 'online' event (mean of 20)
//   worker_roundtrip  us        a small message to a worker and back, --count N times in sequence
//   worker_one_way    msg_per_s N*10 small messages main to worker, until the worker has them all
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { integer, report } = require('./args');

if (!isMainThread) {
  if (workerData.mode === 'echo') {
    parentPort.on('message', (m) => parentPort.postMessage(m));
  } else if (workerData.mode === 'count') {
    let received = 0;
    parentPort.on('message', () => {
      if (++received === workerData.expected) parentPort.postMessage(received);
    });
  }
  return;
}

const count = integer('count', 100000);
const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9;

function startup(workers, done) {
  let total = 0;
  let made = 0;
  const next = () => {
    if (made++ === workers) return done((total / workers) * 1e3);
    const start = process.hrtime.bigint();
    const w = new Worker(__filename, { workerData: { mode: 'idle' } });
    w.once('online', () => { total += seconds(start); });
    w.once('exit', next);
  };
  next();
}

function roundtrip(done) {
  const w = new Worker(__filename, { workerData: { mode: 'echo' } });
  let remaining = count;
  const start = process.hrtime.bigint();
  w.on('message', () => {
    if (--remaining > 0) return w.postMessage({ ping: remaining });
    const us = (seconds(start) / count) * 1e6;
    w.terminate().then(() => done(us));
  });
  w.postMessage({ ping: remaining });
}

function oneWay(done) {
  const total = count * 10;
  const w = new Worker(__filename, { workerData: { mode: 'count', expected: total } });
  let start;
  w.once('online', () => {
    start = process.hrtime.bigint();
    for (let i = 0; i < total; i++) w.postMessage({ i });
  });
  w.once('message', () => {
    const rate = total / seconds(start);
    w.terminate().then(() => done(rate));
  });
}

startup(20, (ms) => {
  report('worker_startup', ms, 'ms');
  roundtrip((us) => {
    report('worker_roundtrip', us, 'us');
    oneWay((rate) => report('worker_one_way', rate, 'msg_per_s'));
  });
});
