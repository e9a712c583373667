"""Start `sgrec serve` for a run, ask it for one user's next items over HTTP, and stop it
(what `make demo` does). Only the standard library is used on the client side.

Usage: python examples/serve_client.py --run runs/demo --user 0 [--k 5] [--model sft]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", default="sft")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "sgrec_cli.cli", "serve", "--run",
                               args.run, "--model", args.model, "--port", str(port)])
    try:
        deadline = time.time() + 300
        while True:  # the model loads before the port opens
            if server.poll() is not None:
                return server.returncode or 1
            try:
                with urllib.request.urlopen(url + "/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    print("server not ready after 300 s", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        body = {"user": args.user, "k": args.k}
        print(f"$ curl -s {url}/recommend -d '{json.dumps(body)}'")
        status, answer = post(url + "/recommend", body)
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        bad = {"history": ["no-such-item"]}
        print(f"$ curl -s {url}/recommend -d '{json.dumps(bad)}'")
        bad_status, bad_answer = post(url + "/recommend", bad)
        print(f"{bad_status} {json.dumps(bad_answer)}")
        ok = status == 200 and len(answer["items"]) == args.k and bad_status == 422
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
