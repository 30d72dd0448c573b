"""The disk's own commit latency: 8 kB written and fdatasync'd in a loop,
as PostgreSQL's WAL writes are, for SECONDS on a file in DIR.

  fsync_tail.py SECONDS DIR

Prints the count, p50, p99, p99.9 and the longest, and how many took over
50 ms: every commit waits for one, so no durable design answers faster
than this disk's tail lets it.
"""
import os
import sys
import time

seconds, directory = float(sys.argv[1]), sys.argv[2]
path = os.path.join(directory, "fsync_tail.dat")
size = 16 << 20  # a WAL segment, written before the loop as PostgreSQL does
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
try:
    os.write(fd, b"\0" * size)
    os.fdatasync(fd)
    block, lat, offset = b"x" * 8192, [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        os.pwrite(fd, block, offset)
        offset = (offset + len(block)) % size
        start = time.perf_counter()
        os.fdatasync(fd)
        lat.append(time.perf_counter() - start)
finally:
    os.close(fd)
    os.unlink(path)
lat.sort()
n = len(lat)
ms = lambda s: f"{s * 1000:.2f}"
print(f"{n} fdatasyncs in {seconds:g} s: p50 {ms(lat[n // 2])} ms, p99 {ms(lat[int(n * .99)])} ms, "
      f"p99.9 {ms(lat[int(n * .999)])} ms, longest {ms(lat[-1])} ms, {sum(x > .05 for x in lat)} over 50 ms")
