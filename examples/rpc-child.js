// rpc-child.js: rpc-parent's Node child, plain Node: answers each
// {id, op: 'add', a, b} with {id, result: a + b}; exits when the parent disconnects.
process.on('message', (m) => process.send({ id: m.id, result: m.a + m.b }));
