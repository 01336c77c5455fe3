"""A TCP proxy on loopback that delays every byte by a fixed time each way: a link with a
long round trip (2 x DELAY_MS) and no bandwidth limit of its own, to measure remote memory
tables as over a real network without changing the machine's network settings.

Usage: delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS
Prints "ready" once it listens; runs until killed.
"""
import asyncio
import sys
import time


async def pump(reader, writer, delay):
    """Forward reader to writer, each chunk `delay` seconds after it arrived; chunks keep
    their order and do not wait for each other (latency, not a bandwidth cap)."""
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(1 << 16)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                break
    except ConnectionError:
        await queue.put((time.monotonic(), b""))
    try:
        await task
    except ConnectionError:
        pass


async def main():
    listen, upstream, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pump(cr, uw, delay), pump(ur, cw, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
