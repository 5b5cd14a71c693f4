// Fan-out on the reference Socket.IO server (socket.io v4): every socket
// joins the room `bench`, except the control socket (query `control=1`),
// whose `publish` event the server sends to the room with
// `io.to('bench').emit('publication', data)`.
//
//     node sio_fanout.mjs PORT
//
// Listens on 127.0.0.1:PORT, path /socket.io/, without per-message deflate.
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node sio_fanout.mjs PORT');
  process.exit(2);
}

const http = createServer();
const io = new Server(http, { serveClient: false, perMessageDeflate: false, maxHttpBufferSize: 65536 });
io.on('connection', (socket) => {
  if (socket.handshake.query.control) {
    socket.on('publish', (data) => io.to('bench').emit('publication', data));
  } else {
    socket.join('bench');
  }
});
http.listen(port, '127.0.0.1');
http.on('error', (err) => {
  console.error(`sio_fanout.mjs: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
