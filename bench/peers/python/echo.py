"""Echo WebSocket server on the Python websockets library (asyncio API).

Every text message is sent back as text and every binary message as binary;
websockets answers pings and close frames itself.

    python echo.py PORT

Listens on 127.0.0.1:PORT, any path, without compression, messages up to
1 MiB. Runs on uvloop when it is installed, otherwise on asyncio's own loop.
"""

import asyncio
import logging
import sys

from websockets.asyncio.server import serve

try:
    import uvloop
except ImportError:
    uvloop = None


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(port):
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=1 << 20) as server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        port = int(sys.argv[1])
    except (IndexError, ValueError):
        sys.exit("usage: echo.py PORT")
    # Handshakes that fail (port probes, aborted clients) are not reported.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    if uvloop is not None:
        uvloop.run(main(port))
    else:
        asyncio.run(main(port))
