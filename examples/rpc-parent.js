// rpc-parent [SCRIPT]: the Node twin of rpc-parent.cpp. Forks SCRIPT (default:
// rpc-child.js, next to this file), sends it three {op: 'add', a, b} requests
// one after the other and prints each result. request() gives each message an
// id and awaits the reply that carries it back, within 5 s.
const { fork } = require('node:child_process');
const path = require('node:path');

let lastId = 0;
function request(child, message, timeout) {
  const id = ++lastId;
  return new Promise((resolve, reject) => {
    const fail = (code) => done(Object.assign(new Error(code), { code }));
    const onMessage = (reply) => reply?.id === id && done(null, reply);
    const onDisconnect = () => fail('ERR_IPC_CHANNEL_CLOSED');
    const timer = setTimeout(() => fail('ETIMEDOUT'), timeout);
    function done(error, reply) {
      clearTimeout(timer);
      child.off('message', onMessage).off('disconnect', onDisconnect);
      if (error) reject(error);
      else resolve(reply);
    }
    if (!child.connected) return onDisconnect();
    child.on('message', onMessage).on('disconnect', onDisconnect);
    child.send({ id, ...message }, (error) => error && fail(error.code));
  });
}

(async () => {
  const child = fork(process.argv[2] ?? path.join(__dirname, 'rpc-child.js'));
  child.on('error', () => {}); // a failed send rejects its request
  let failures = 0;
  for (let i = 1; i <= 3; i++) {
    try {
      const reply = await request(child, { op: 'add', a: i, b: 10 * i }, 5000);
      console.log(`${i} + ${10 * i} = ${reply.result}`);
    } catch (error) {
      console.log(`request ${i}: ${error.code}`);
      failures++;
    }
  }
  if (child.connected) child.disconnect();
  process.exitCode = failures === 0 ? 0 : 1;
})();
