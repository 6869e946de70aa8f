// Node's side of `process-image`: crew-server's POST /process-image?grayscale
// written in Node, as the seeds would with worker_threads: a cluster of W
// workers, each with a piscina pool of 2 threads decoding and encoding with
// pngjs (sharp is not in Debian). Under wrk with bench/wrk/post-file.lua,
// posting an N x N PNG made by FFmpeg's testsrc2, as crew-bench does.
//   --workers W (2)  --connections C (16)  --seconds S (5)  --threads T (2)  --size N (512)
'use strict';
const cluster = require('node:cluster');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');
const { integer } = require('./args');

if (cluster.isWorker) {
  const { Piscina } = require('piscina');
  const pool = new Piscina({ filename: path.join(__dirname, 'image-task.js'), minThreads: 2, maxThreads: 2 });
  http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const out = await pool.run(Buffer.concat(chunks));
        res.writeHead(200, { 'Content-Type': 'image/png' }).end(Buffer.from(out));
      } catch (e) {
        res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
      }
    });
  }).listen(0, '127.0.0.1');
  return;
}

const workers = integer('workers', 2);
const size = integer('size', 512);
const image = path.join(os.tmpdir(), `node-bench-image-${process.pid}.png`);
execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `testsrc2=size=${size}x${size}`, '-frames:v', '1', image]);
const args = ['-t', String(integer('threads', 2)), '-c', String(integer('connections', 16)),
  '-d', `${integer('seconds', 5)}s`, '-s', path.join(__dirname, '..', 'wrk', 'post-file.lua')];

let listening = 0;
cluster.on('listening', (worker, address) => {
  if (++listening < workers) return;
  const url = `http://127.0.0.1:${address.port}/process-image?grayscale`;
  const wrk = spawn('wrk', [...args, url, '--', image, 'image/png']);
  let out = '';
  wrk.stdout.on('data', (d) => { out += d; });
  wrk.on('close', () => {
    for (const line of out.split('\n')) if (/^[a-z_0-9]+ [0-9.]+ [a-z_]+$/.test(line)) console.log(line);
    fs.rmSync(image, { force: true });
    cluster.disconnect();
  });
});
for (let i = 0; i < workers; i++) cluster.fork();
