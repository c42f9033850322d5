// Node `ws` client for the frame-aware tunnel tests.
// Usage: node ws_client.js URL echo COUNT SEED   -> sends COUNT random messages (some
//          fragmented), checks each echo, closes 1000, prints one JSON line
//        node ws_client.js URL idle               -> prints {"open":true}, then waits;
//          prints {"close":CODE,"reason":...} when the connection closes
// perMessageDeflate is on (ws's default for clients), so RSV1 frames cross the proxy.
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));

const [url, mode, countArg, seedArg] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// Small deterministic PRNG (mulberry32) so a failing seed can be replayed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ws = new WebSocket(url, { perMessageDeflate: true });
ws.on('error', (err) => out({ error: String(err) }));
ws.on('close', (code, reason) => {
  out({ close: code, reason: reason.toString() });
  process.exit(0);
});

if (mode === 'idle') {
  ws.on('open', () => out({ open: true, extensions: ws.extensions }));
} else {
  const count = parseInt(countArg, 10);
  const next = rng(parseInt(seedArg, 10));
  const sent = [];
  let received = 0;
  ws.on('open', () => {
    for (let i = 0; i < count; i++) {
      const size = Math.floor(next() * (next() < 0.1 ? 200000 : 2000));
      const buf = Buffer.alloc(size);
      for (let j = 0; j < size; j++) buf[j] = Math.floor(next() * 256);
      sent.push(buf);
      if (next() < 0.2 && size > 2) {  // a fragmented message: two frames
        ws.send(buf.subarray(0, size >> 1), { binary: true, fin: false });
        ws.send(buf.subarray(size >> 1), { binary: true, fin: true });
      } else {
        ws.send(buf, { binary: true });
      }
    }
  });
  ws.on('message', (data) => {
    const want = sent[received++];
    if (!Buffer.from(data).equals(want)) {
      out({ mismatch: received - 1 });
      process.exit(1);
    }
    if (received === count) {
      out({ ok: true, received, extensions: ws.extensions });
      ws.close(1000, 'bye');
    }
  });
}
