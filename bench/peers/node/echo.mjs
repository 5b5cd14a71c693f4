// Echo WebSocket server on ws: every text or binary message is sent back as it
// came; ws answers pings and close frames itself.
//
//     node echo.mjs PORT
//
// Listens on 127.0.0.1:PORT, any path, without per-message deflate.
import { WebSocketServer } from 'ws';

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node echo.mjs PORT');
  process.exit(2);
}

const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
});

wss.on('error', (err) => {
  console.error(`echo.mjs: ${err.message}`);
  process.exit(1);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
