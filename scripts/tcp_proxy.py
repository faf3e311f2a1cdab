#!/usr/bin/env python3
"""A TCP proxy for the failover case (scripts/failover.sh).

Two uses:
- In front of the functions, standing in for ElastiCache's primary endpoint,
  a DNS name that moves to the promoted replica: the target is read from
  TARGET_FILE ("host:port") for every new connection, and SIGHUP closes every
  open connection, so clients reconnect and reach whatever the file names now
  (what a DNS switch plus the old primary's death does to a client).
- On the replication link, between a replica and its primary: stopping this
  process (SIGSTOP) holds back the replication stream in its socket buffers,
  and killing it (SIGKILL) throws that stream away, so the replica lacks the
  last writes as a lagging asynchronous replica does.

Only the standard library; listens on 127.0.0.1.
"""

import argparse
import asyncio
import signal


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


class Proxy:
    def __init__(self, target_file):
        self.target_file = target_file
        self.open = set()

    def target(self):
        with open(self.target_file, encoding="utf-8") as f:
            host, port = f.read().strip().rsplit(":", 1)
        return host, int(port)

    async def serve(self, reader, writer):
        try:
            host, port = self.target()
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, ValueError):
            writer.close()
            return
        tasks = {
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        }
        entry = (writer, up_writer, frozenset(tasks))
        self.open.add(entry)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            writer.close()
            up_writer.close()
            self.open.discard(entry)

    def drop_all(self):
        for writer, up_writer, tasks in list(self.open):
            for t in tasks:
                t.cancel()
            writer.close()
            up_writer.close()
        self.open.clear()


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--target-file", required=True)
    args = ap.parse_args()
    proxy = Proxy(args.target_file)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, proxy.drop_all)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", args.listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
