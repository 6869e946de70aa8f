// Shared by the Node workloads: --name value options and `name value unit` output,
// the same conventions as crew-bench.
'use strict';

function integer(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`--${name} needs a positive integer`);
    process.exit(2);
  }
  return value;
}

function report(name, value, unit) {
  console.log(`${name} ${Number(value.toPrecision(6))} ${unit}`);
}

function text(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
}

module.exports = { integer, report, text };
