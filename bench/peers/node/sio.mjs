// The hero application on the reference Socket.IO server (socket.io v4):
// `get_name` is answered with a `name` event and, when the client asks for
// one, the same data as the ack, as palisade's hero application answers it
// over Socket.IO.
//
//     node sio.mjs PORT
//
// Listens on 127.0.0.1:PORT, path /socket.io/, polling and WebSocket,
// without per-message deflate.
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node sio.mjs PORT');
  process.exit(2);
}

const HEROES = {
  ironMan: 'Tony Stark',
  hulk: 'Bruce Banner',
  wonderWoman: 'Diana',
  batMan: 'Bruce Wayne',
  blackPanther: "T'Challa",
};

const http = createServer();
const io = new Server(http, { serveClient: false, perMessageDeflate: false, maxHttpBufferSize: 65536 });

io.on('connection', (socket) => {
  socket.on('get_name', (data, ack) => {
    const hero = data && data.hero;
    const name = Object.hasOwn(HEROES, hero) ? HEROES[hero] : undefined;
    const reply = name !== undefined
      ? { hero, hero_name: name }
      : { code: 'unknown_hero', message: `no hero ${JSON.stringify(hero)}` };
    socket.emit(name !== undefined ? 'name' : 'error', reply);
    if (typeof ack === 'function') ack(reply);
  });
});

http.listen(port, '127.0.0.1');
http.on('error', (err) => {
  console.error(`sio.mjs: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
