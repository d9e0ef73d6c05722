"""A cache node that keeps only the keys its member serves, following the ring its agent writes.

    python cache_node.py --ring-dir /var/run/ring --address $POD_IP --port 11211 \
        --keys keys.txt --report /tmp/held.json --listen 127.0.0.1:8081

Run it beside the ring agent with ``--reload-url http://127.0.0.1:8081/reload``: the agent POSTs
after every new version and acknowledges only once this node answered, having applied the ring.
That is what makes a handover safe: a shard's previous owner keeps it (``is_mine`` says so while
the ring lists it under ``handover``) until the new owner has acknowledged, so no key goes
unserved. Needs only the standard library and shardring_client (clients/python).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shardring_client import MountedRing, Ring


class CacheNode:
    def __init__(self, ring_dir: str, address: str, port: int, keys: list[str], report: str):
        self.ring_dir, self.address, self.port = ring_dir, address, port
        self.keys, self.report = keys, report
        self.lock = threading.Lock()
        self.ring: MountedRing | None = None
        self.held: list[str] = []

    def apply(self) -> None:
        """Take the newest ring and keep exactly the keys this member serves in it."""
        with self.lock:
            if self.ring is None:
                if not os.path.exists(os.path.join(self.ring_dir, "ring.json")):
                    return  # the agent has not written a ring yet
                self.ring = MountedRing(self.ring_dir, address=self.address, port=self.port)
            else:
                self.ring.refresh()
            ring: Ring = self.ring.ring
            try:
                me = ring.find(address=self.address, port=self.port)
            except LookupError:
                me = None  # not in this version: serve nothing until we are
            self.held = [k for k in self.keys if me is not None and ring.is_mine(k, me)]
            self._write({"version": ring.version, "member": me, "keys": self.held})

    def _write(self, document: dict) -> None:
        temporary = f"{self.report}.tmp"
        with open(temporary, "w") as file:
            json.dump(document, file)
        os.replace(temporary, self.report)  # a reader sees the old report or the new one


def serve(node: CacheNode, listen: str) -> ThreadingHTTPServer:
    class Reload(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            node.apply()
            self.send_response(200 if self.path == "/reload" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass
    host, port = listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Reload)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ring-dir", required=True)
    parser.add_argument("--address", required=True, help="the address this member registered")
    parser.add_argument("--port", type=int, required=True, help="the port it registered")
    parser.add_argument("--keys", required=True, help="a file of keys, one per line")
    parser.add_argument("--report", required=True, help="where to write the keys held")
    parser.add_argument("--listen", required=True, help="host:port for POST /reload")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between checks")
    args = parser.parse_args()
    with open(args.keys) as file:
        keys = [line.rstrip("\n") for line in file if line.strip()]
    node = CacheNode(args.ring_dir, args.address, args.port, keys, args.report)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serve(node, args.listen)
    while not stop.is_set():  # also without the agent's POST: a mounted ConfigMap changes too
        node.apply()
        stop.wait(args.interval)


if __name__ == "__main__":
    main()
