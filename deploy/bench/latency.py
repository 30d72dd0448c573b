"""Latency percentiles for run.sh, from what each tool leaves behind.

  latency.py pgbench SECONDS CLIENTS LOG...   pgbench --log files (one line
      per transaction; the third field is its latency in µs): p50 and p99
      as measured, and p99 corrected the way wrk corrects its own (below),
      so that the two tools' figures compare.
  latency.py metrics BEFORE AFTER ROUTE       two scrapes of keyward's
      /metrics: the p50 and p99 of keyward's own request durations for
      ROUTE between them, as bucket bounds (the percentile is at most that).

wrk (4.x) corrects its latency histogram for coordinated omission: with
`interval` = the run's duration divided by the requests per connection,
every sample of n ≥ 2·interval also counts as n − interval, n − 2·interval,
… down to above interval: the requests a client sending at the run's
average rate would have sent, and seen delayed, while one was stalled. A
single stall of half a second at 64 connections thus adds thousands of
samples, which is why wrk's p99 is mostly a count of stalls.
"""
import re
import sys


def percentile(sorted_values, p):
    if not sorted_values:
        return 0
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def wrk_corrected(latencies, interval):
    """The samples wrk's stats_correct adds, appended to `latencies`."""
    out = list(latencies)
    for n in latencies:
        if n >= 2 * interval:
            m = n - interval
            while m > interval:
                out.append(m)
                m -= interval
    out.sort()
    return out


def pgbench(seconds, clients, logs):
    lat = []
    for log in logs:
        with open(log) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    lat.append(int(fields[2]))
    lat.sort()
    if not lat:
        print("0 0 0")
        return
    interval = seconds * 1e6 / (len(lat) / clients)
    corrected = wrk_corrected(lat, interval)
    ms = lambda us: f"{us / 1000:.1f}"
    print(ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(corrected, 99)))


def buckets(path, route):
    counts = {}
    pattern = re.compile(r'^\w*http_request_duration_seconds_bucket\{(.*)\} (\d+)$')
    with open(path) as f:
        for line in f:
            m = pattern.match(line.strip())
            if not m or f'route="{route}"' not in m.group(1):
                continue
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            bound = float("inf") if le == "+Inf" else float(le)
            counts[bound] = counts.get(bound, 0) + int(m.group(2))
    return counts


def metrics(before, after, route):
    a, b = buckets(before, route), buckets(after, route)
    delta = sorted((bound, b[bound] - a.get(bound, 0)) for bound in b)
    total = delta[-1][1] if delta else 0
    out = []
    for p in (50, 99):
        bound = next((bound for bound, n in delta if total and n >= total * p / 100), float("inf"))
        out.append("inf" if bound == float("inf") else f"{bound * 1000:g}")
    print(*out)


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "pgbench":
        pgbench(float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    elif kind == "metrics":
        metrics(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
