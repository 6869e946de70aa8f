// The task of process-image.js's piscina pool: a PNG in, its grayscale PNG out
// (BT.601 luma, as crew-server computes it), through pngjs, a pure-JS codec.
'use strict';
const { PNG } = require('pngjs');

module.exports = (bytes) => {
  const png = PNG.sync.read(Buffer.from(bytes));
  const data = png.data;
  for (let i = 0; i < data.length; i += 4) {
    const y = Math.round((299 * data[i] + 587 * data[i + 1] + 114 * data[i + 2]) / 1000);
    data[i] = data[i + 1] = data[i + 2] = y;
  }
  return PNG.sync.write(png, { colorType: 0 });
};
