"""The hero application on python-socketio (asyncio, ASGI) under uvicorn.

`get_name` is answered with a `name` event and, when the client asks for one,
the same data as the ack (the handler's return value), as palisade's hero
application answers it over Socket.IO.

    python sio.py PORT

Listens on 127.0.0.1:PORT, path /socket.io/, polling and WebSocket; uvicorn
picks uvloop and httptools when they are installed.
"""

import sys

import socketio
import uvicorn

HEROES = {
    "ironMan": "Tony Stark",
    "hulk": "Bruce Banner",
    "wonderWoman": "Diana",
    "batMan": "Bruce Wayne",
    "blackPanther": "T'Challa",
}

sio = socketio.AsyncServer(async_mode="asgi", max_http_buffer_size=65536)


@sio.on("get_name")
async def get_name(sid, data):
    hero = data.get("hero") if isinstance(data, dict) else None
    name = HEROES.get(hero) if isinstance(hero, str) else None
    if name is None:
        reply = {"code": "unknown_hero", "message": f"no hero {hero!r}"}
        await sio.emit("error", reply, to=sid)
    else:
        reply = {"hero": hero, "hero_name": name}
        await sio.emit("name", reply, to=sid)
    return reply


if __name__ == "__main__":
    try:
        port = int(sys.argv[1])
    except (IndexError, ValueError):
        sys.exit("usage: sio.py PORT")
    uvicorn.run(socketio.ASGIApp(sio), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)
