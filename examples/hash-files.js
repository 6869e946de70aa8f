// hash-files FILE...: the Node twin of hash-files.cpp. The SHA-256 of each
// file, printed as sha256sum prints it, in the order given. All the files are
// read at once (on libuv's thread pool), in 64 KiB pieces, and hashed on the
// main thread; one that cannot be read is reported by its error's name, and
// the exit code is 1.
const { createHash } = require('node:crypto');
const { createReadStream } = require('node:fs');

async function sha256(file) {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(file, { highWaterMark: 64 * 1024 })) hash.update(piece);
  return hash.digest('hex');
}

(async () => {
  const files = process.argv.slice(2);
  const sums = await Promise.allSettled(files.map(sha256));
  sums.forEach((sum, i) => {
    if (sum.status === 'fulfilled') {
      console.log(`${sum.value}  ${files[i]}`);
    } else {
      console.error(`hash-files: ${files[i]}: ${sum.reason.code}`);
      process.exitCode = 1;
    }
  });
})();
