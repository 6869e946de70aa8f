// Node's nearest equivalent of crew's `post`: messages between threads.
//   post_one_way    per_s  a worker posts N small messages to the main thread
//   post_roundtrip  us     main -> worker -> main, N times in sequence
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { integer, report } = require('./args');

if (!isMainThread) {
  parentPort.on('message', (m) => {
    if (m.cmd === 'burst') {
      for (let i = 0; i < workerData.count; i++) parentPort.postMessage(i);
    } else if (m.cmd === 'ping') {
      parentPort.postMessage(m);
    } else if (m.cmd === 'exit') {
      parentPort.close();
    }
  });
  return;
}

const count = integer('count', 1000000);
const trips = Math.max(1, Math.floor(count / 10));
const worker = new Worker(__filename, { workerData: { count } });

worker.once('online', () => {
  let received = 0;
  let checksum = 0;
  const start = process.hrtime.bigint();
  const onBurst = (i) => {
    checksum += i;
    if (++received < count) return;
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    if (checksum !== (count * (count - 1)) / 2) console.error('post: lost messages');
    report('post_one_way', count / seconds, 'per_s');
    worker.off('message', onBurst);
    roundTrips();
  };
  worker.on('message', onBurst);
  worker.postMessage({ cmd: 'burst' });
});

function roundTrips() {
  let remaining = trips;
  const ping = { cmd: 'ping' };
  const start = process.hrtime.bigint();
  worker.on('message', () => {
    if (--remaining > 0) return worker.postMessage(ping);
    const us = Number(process.hrtime.bigint() - start) / 1e3 / trips;
    report('post_roundtrip', us, 'us');
    worker.postMessage({ cmd: 'exit' });
  });
  worker.postMessage(ping);
}
