"""A TCP proxy on loopback that delays every byte by a fixed time each way: a link with a
long round trip (2 x DELAY_MS) and, when MB_PER_S is given, at most that many MB (10^6 bytes)
per second each way per connection; to measure what a page does over a real network without
changing the machine's network settings.

Usage: delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS [MB_PER_S]
Prints "ready" once it listens; runs until killed.
"""
import asyncio
import sys
import time


async def pump(reader, writer, delay, rate=None):
    """Forward reader to writer, each chunk `delay` seconds after it arrived; chunks keep
    their order and do not wait for each other (latency), and with `rate` (bytes/s) leave no
    faster than that (a bandwidth cap)."""
    queue = asyncio.Queue()

    async def deliver():
        free_at = time.monotonic()
        while True:
            due, data = await queue.get()
            if rate:
                # The link is busy until the bytes before these have left.
                due = max(due, free_at)
                free_at = due + len(data) / rate
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
    rate = float(sys.argv[4]) * 1e6 if len(sys.argv) > 4 else None

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pump(cr, uw, delay, rate), pump(ur, cw, delay, rate))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
