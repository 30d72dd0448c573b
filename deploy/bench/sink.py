#!/usr/bin/env python3
"""A local stand-in for an SMS provider that accepts every request.

    python3 deploy/bench/sink.py PORT [COUNT_FILE [KEYS_FILE]]

Answers each HTTP/1.1 request with an empty 200 on a kept-alive
connection; on SIGTERM/SIGINT writes the number of requests it answered to
COUNT_FILE (if given) and exits. With KEYS_FILE, each request's
Idempotency-Key is written there, one a line, as it arrives (the cluster
drill counts deliveries per key). The target of the dispatcher benchmark.
Listens on 127.0.0.1 only.
"""

import asyncio
import signal
import sys

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class Sink(asyncio.Protocol):
    answered = 0
    keys = None

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            key = None
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"idempotency-key":
                    key = value.strip()
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            Sink.answered += 1
            if Sink.keys is not None:
                Sink.keys.write((key or b"-") + b"\n")
            self.transport.write(OK)


async def main(port, count_file, keys_file=None):
    if keys_file:
        Sink.keys = open(keys_file, "ab", buffering=0)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(Sink, "127.0.0.1", port)
    await stop
    server.close()
    if count_file:
        with open(count_file, "w") as f:
            f.write(f"{Sink.answered}\n")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), *(sys.argv[2:4] or [None])))
