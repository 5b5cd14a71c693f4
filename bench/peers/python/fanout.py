"""Fan-out on the Python websockets library (asyncio API): every client is a
subscriber, except the control connection (path /control), whose every
message goes to all subscribers with `websockets.broadcast`.

    python fanout.py PORT

Listens on 127.0.0.1:PORT without compression. Runs on uvloop when it is
installed, otherwise on asyncio's own loop.
"""

import asyncio
import logging
import sys

from websockets.asyncio.server import broadcast, serve

try:
    import uvloop
except ImportError:
    uvloop = None

subscribers = set()


async def handler(ws):
    if ws.request.path == "/control":
        async for message in ws:
            broadcast(subscribers, message)
        return
    subscribers.add(ws)
    try:
        await ws.wait_closed()
    finally:
        subscribers.discard(ws)


async def main(port):
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=1 << 20) as server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        port = int(sys.argv[1])
    except (IndexError, ValueError):
        sys.exit("usage: fanout.py PORT")
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    if uvloop is not None:
        uvloop.run(main(port))
    else:
        asyncio.run(main(port))
