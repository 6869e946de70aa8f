// A Node child for crew's interop tests, forked by a crew parent.
// Echoes every message. With a handle (a socket), writes "hello from node" into
// it. On {"serve": true} it sends back a listening TCP server as a handle,
// with its port, then "after the handle".
'use strict';
const net = require('node:net');

process.on('message', (message, handle) => {
  if (handle) {
    const socket = new net.Socket({ handle, readable: true, writable: true });
    socket.end('hello from node', () => process.send({ wrote: true, msg: message }));
    return;
  }
  if (message && message.serve) {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      process.send({ port: server.address().port }, server, () => {
        process.send('after the handle');
        server.close();
      });
    });
    return;
  }
  process.send(message);
});
