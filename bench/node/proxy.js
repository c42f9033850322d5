// node http-proxy target for wsgate's benchmark (bench/targets.py), as http-proxy's
// README shows for WebSockets: a plain http server, proxy.web for requests and
// proxy.ws on 'upgrade'. With CERT and KEY the server is node's https server instead
// (TLS 1.3 only: the bench's TLS workloads), proxying to the same plain backend.
// Usage: node proxy.js PORT BACKEND_PORT [CERT KEY]   (127.0.0.1 only).
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');
const httpProxy = require('http-proxy');

const [portArg, backendArg, cert, key] = process.argv.slice(2);
const [port, backend] = [portArg, backendArg].map(Number);
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${backend}`, ws: true });
// Without an error handler a single reset connection would crash the process.
proxy.on('error', (err, req, res) => {
  if (res && typeof res.writeHead === 'function' && !res.headersSent) {
    res.writeHead(502);
    res.end();
  } else if (res && typeof res.destroy === 'function') {
    res.destroy();
  }
});
const handler = (req, res) => proxy.web(req, res);
const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key),
                         minVersion: 'TLSv1.3' }, handler)
  : http.createServer(handler);
server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));
// A client that resets mid-handshake must not take the process down.
server.on('tlsClientError', () => {});
server.listen(port, '127.0.0.1');
