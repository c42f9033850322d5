// Node `ws` echo server, as in the articles: `new WebSocketServer({ port })`.
// Usage: node ws_echo.js PORT [HOST]
// Non-upgrade requests get node's/ws's own `426 Upgrade Required` (body "Upgrade Required").
// Every message is echoed back with its text/binary type preserved.
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, 'node_modules', 'ws'));

const port = parseInt(process.argv[2], 10);
const host = process.argv[3] || '127.0.0.1';
if (!port) {
  console.error('usage: node ws_echo.js PORT [HOST]');
  process.exit(2);
}

const wss = new WebSocketServer({ port, host });
wss.on('listening', () => console.log(`ws echo listening on ${host}:${port}`));
wss.on('connection', (ws, req) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
