// supervisor COMMAND [ARG...]: the Node twin of supervisor.cpp. Runs COMMAND
// and starts it again each time it fails (a non-zero exit or a signal): 100 ms
// later, then 200 ms, 400 ms... up to 10 s; a run that lasted 10 s starts the
// delay over. It gives up after 5 failures in a row (exit code 1), and exits 0
// once COMMAND succeeds. SIGTERM or SIGINT stops COMMAND and the supervisor.
// COMMAND runs in a process group of its own, which goes with it: no process
// it started is left behind, after a failure or a stop.
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const { setTimeout: sleep } = require('node:timers/promises');

async function supervise(command, args) {
  const stopping = new AbortController();
  for (const name of ['SIGTERM', 'SIGINT']) process.on(name, () => stopping.abort());
  let delay = 100;
  for (let failures = 1; ; ++failures) {
    const started = Date.now();
    const child = spawn(command, args, { stdio: 'inherit', detached: true, signal: stopping.signal });
    const group = () => child.pid && process.kill(-child.pid, 'SIGTERM');
    stopping.signal.addEventListener('abort', () => { try { group(); } catch {} });
    let code, signal;
    try {
      [code, signal] = await once(child, 'exit');
    } catch (error) {
      if (stopping.signal.aborted) break;
      console.error(`supervisor: cannot run ${command}: ${error.code}`);
      return 127;
    }
    try {
      group(); // what COMMAND left running goes with it
    } catch {}
    if (stopping.signal.aborted || code === 0) break;
    if (Date.now() - started >= 10000) [failures, delay] = [1, 100];
    const why = signal ?? `code ${code}`;
    if (failures === 5) {
      console.error(`supervisor: ${command} failed 5 times in a row (${why}); giving up`);
      return 1;
    }
    console.error(`supervisor: ${command} failed (${why}); again in ${delay} ms`);
    try {
      await sleep(delay, undefined, { signal: stopping.signal });
    } catch {
      break; // stopped meanwhile
    }
    delay = Math.min(delay * 2, 10000);
  }
  return 0;
}

if (process.argv.length < 3) {
  console.error('usage: supervisor COMMAND [ARG...]');
  process.exit(2);
}
supervise(process.argv[2], process.argv.slice(3)).then((code) => {
  process.exitCode = code;
});
