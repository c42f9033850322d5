// A Socket.IO server for wsgate's end-to-end tests, run as several processes on
// different ports with no adapter between them: each process knows only its own
// Engine.IO sessions, so the long-polling requests of one session must all reach the
// process that created it (sticky sessions, `ip_hash` in the proxy).
//
//   node server.js PORT NAME        (listens on 127.0.0.1:PORT)
//
// GET / serves index.html; the client library comes from Socket.IO itself at
// /socket.io/socket.io.js. Events: the server greets each socket with
// `hello {backend}`; `echo` is answered through the acknowledgement callback.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const name = process.argv[3] || `backend-${port}`;
const page = fs.readFileSync(path.join(__dirname, "index.html"));

const server = http.createServer((req, res) => {
  if (req.method === "GET" && (req.url === "/" || req.url === "/index.html")) {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "X-Backend": name });
    res.end(page);
    return;
  }
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found\n");
});

const io = new Server(server);

io.on("connection", (socket) => {
  console.log(`connect ${socket.id} ${socket.conn.transport.name}`);
  socket.conn.on("upgrade", (transport) => {
    console.log(`upgrade ${socket.id} ${transport.name}`);
  });
  socket.emit("hello", { backend: name });
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack({ backend: name, payload });
  });
});

server.listen(port, "127.0.0.1", () => {
  console.log(`socket.io ${name} listening on 127.0.0.1:${port}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
