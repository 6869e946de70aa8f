// cluster-json-api [--port P] [--workers N]: the Node twin of
// cluster-json-api.cpp. A JSON API served by a cluster, one worker per core
// unless --workers says otherwise, on 127.0.0.1:P (default 8000). A worker
// that dies is started again (with backoff); SIGTERM or SIGINT shuts down
// gracefully. Each answer names the worker (its pid) that gave it:
//
//   GET  /api/health                 {"status":"ok","worker":PID}
//   POST /api/sum {"numbers":[...]}   {"sum":S,"count":N,"worker":PID}
//   GET  /api/primes?below=N         {"below":N,"primes":C,"worker":PID}, N up to 10,000,000
//
// Bad input gets 400 and {"error": "..."}.
const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');
const { parseArgs } = require('node:util');

// How many primes are below n: CPU work, which the cluster spreads over cores.
function primesBelow(n) {
  const composite = new Uint8Array(Math.max(n, 2));
  let count = 0;
  for (let i = 2; i < n; ++i) {
    if (composite[i]) continue;
    ++count;
    for (let j = i * i; j < n; j += i) composite[j] = 1;
  }
  return count;
}

function route(req, body) {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/api/health') return [200, { status: 'ok', worker: process.pid }];
  if (req.method === 'POST' && url.pathname === '/api/sum') {
    let numbers;
    try {
      numbers = JSON.parse(body).numbers;
    } catch {}
    if (!Array.isArray(numbers) || !numbers.every((n) => typeof n === 'number'))
      return [400, { error: 'expected {"numbers": [numbers...]}' }];
    return [200, { sum: numbers.reduce((a, b) => a + b, 0), count: numbers.length, worker: process.pid }];
  }
  if (req.method === 'GET' && url.pathname === '/api/primes') {
    const below = url.searchParams.get('below') ?? '';
    const n = Number(below);
    if (!/^\d+$/.test(below) || n > 10_000_000) return [400, { error: 'below must be an integer from 0 to 10000000' }];
    return [200, { below: n, primes: primesBelow(n), worker: process.pid }];
  }
  return [404, { error: 'not found' }];
}

const { values } = parseArgs({ options: { port: { type: 'string', default: '8000' }, workers: { type: 'string' } } });
if (cluster.isPrimary) {
  let delay = 100;
  cluster.on('exit', (worker) => {
    if (worker.exitedAfterDisconnect) return;
    setTimeout(() => cluster.fork(), delay);
    delay = Math.min(delay * 2, 10000);
  });
  for (let i = 0; i < Number(values.workers ?? os.availableParallelism()); ++i) cluster.fork();
  for (const name of ['SIGTERM', 'SIGINT']) process.on(name, () => cluster.disconnect());
} else {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const [status, answer] = route(req, body);
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  server.listen(Number(values.port), '127.0.0.1', () => {
    console.log(`worker ${process.pid} listening on 127.0.0.1:${server.address().port}`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
