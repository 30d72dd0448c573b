#!/usr/bin/env python3
"""Pre-signed webhook requests for the load benchmark, one per line.

    gen_requests.py generic|twilio COUNT SECRET [URL]

Each line is `header<TAB>value<TAB>header<TAB>value<TAB>body`; every
request has a unique gateway id, a number drawn from 100,000 and a text
from a realistic mix (mostly opt-in, opt-out and help, some unknown).
Signatures use the current time, so run it right before the load.
"""
import base64
import hashlib
import hmac
import json
import random
import sys
import time
import urllib.parse
import uuid

MIX = (
    [("MAU", 25), ("mau dong", 5), ("DAFTAR", 3), ("START", 2)]
    + [("UNSUBSCRIBE", 15), ("STOP", 10), ("berhenti", 3), ("СТОП", 2)]
    + [("HELP", 8), ("INFO", 4), ("bantuan", 3)]
    + [("halo kak", 8), ("berapa harga?", 7), ("ok", 5)]
)
TEXTS = [t for t, w in MIX for _ in range(w)]


def number():
    return "+62812%07d" % random.randrange(100_000)


def generic(count, secret):
    ts = str(int(time.time()))
    run = uuid.uuid4().hex[:8]
    for i in range(count):
        body = json.dumps(
            {"id": f"b{run}-{i}", "from": number(), "to": "3344", "text": random.choice(TEXTS)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        sig = hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
        yield [
            "Content-Type", "application/json",
            "X-Keyward-Timestamp", ts,
            "X-Keyward-Signature", "sha256=" + sig,
        ], body


def twilio(count, token, url):
    run = uuid.uuid4().hex[:8]
    for i in range(count):
        params = {
            "MessageSid": f"SM{run}{i:024d}",
            "AccountSid": "AC0123456789abcdef0123456789abcdef",
            "From": number(),
            "To": "+6281100003344",
            "Body": random.choice(TEXTS),
            "NumMedia": "0",
        }
        data = url + "".join(k + v for k, v in sorted(params.items()))
        sig = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()
        yield [
            "Content-Type", "application/x-www-form-urlencoded",
            "X-Twilio-Signature", sig,
        ], urllib.parse.urlencode(params)


def main():
    kind, count, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rows = generic(count, secret) if kind == "generic" else twilio(count, secret, sys.argv[4])
    out = sys.stdout
    for headers, body in rows:
        out.write("\t".join(headers + [body]) + "\n")


if __name__ == "__main__":
    main()
