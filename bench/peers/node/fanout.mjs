// Fan-out on Node ws: every client is a subscriber, except the control
// connection (path /control), whose every message the server sends to
// every other client, looping over `wss.clients`.
//
//     node fanout.mjs PORT
//
// Listens on 127.0.0.1:PORT, without per-message deflate.
import { WebSocketServer, WebSocket } from 'ws';

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node fanout.mjs PORT');
  process.exit(2);
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 1 << 20 });
wss.on('connection', (ws, req) => {
  if (req.url !== '/control') return;
  ws.on('message', (data) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
    }
  });
});
wss.on('error', (err) => {
  console.error(`fanout.mjs: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
