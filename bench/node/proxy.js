// node http-proxy target for wsgate's benchmark (bench/targets.py), as http-proxy's
// README shows for WebSockets: a plain http server, proxy.web for requests and
// proxy.ws on 'upgrade'. Usage: node proxy.js PORT BACKEND_PORT (127.0.0.1 only).
'use strict';
const http = require('http');
const httpProxy = require('http-proxy');

const [port, backend] = process.argv.slice(2).map(Number);
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
const server = http.createServer((req, res) => proxy.web(req, res));
server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));
server.listen(port, '127.0.0.1');
