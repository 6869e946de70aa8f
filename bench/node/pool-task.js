// The task of bench/node/pool.js, run on piscina's worker threads: an integer in, the next out.
'use strict';
module.exports = (n) => n + 1;
