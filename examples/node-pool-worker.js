// node-pool-worker.js: a crew process_pool worker written in Node. It answers
// each {id, task, value} with {id, value}, or {id, error: {code, message}}
// when the task throws.
const tasks = {
  fib(n) {
    if (!Number.isInteger(n) || n < 0) throw Object.assign(new RangeError(`fib needs a whole number >= 0, got ${n}`), { code: 'ERR_OUT_OF_RANGE' });
    let [a, b] = [0, 1];
    for (let i = 0; i < n; i++) [a, b] = [b, a + b];
    return a;
  },
  upper: (text) => String(text).toUpperCase(),
};

process.on('message', async ({ id, task, value }) => {
  try {
    process.send({ id, value: await tasks[task](value) });
  } catch (error) {
    process.send({ id, error: { code: error.code ?? 'ERR_UNCAUGHT_EXCEPTION', message: error.message } });
  }
});
