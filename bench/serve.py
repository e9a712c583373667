"""Load test of `sgrec serve`: requests/s and latency percentiles for C concurrent clients, with
request batching on and off, against in-process `recommend` throughput measured in the same run;
then an optional soak mixing valid and malformed requests, with the server's memory at its
start and end.

The server runs as its own process (`sgrec serve`) on 127.0.0.1 and is stopped with SIGTERM
after each setting. Clients are asyncio tasks in this process, each on its own keep-alive
HTTP/1.1 connection (a minimal client, bench/common.py's Conn: httpx spent 5.6 ms of CPU per
request, a third of this 2-core machine at 110 requests/s, which the server then lacked), each
sending its next request when the last is answered, for ``--seconds`` or ``--max-requests`` at
most. Request histories are the training sequences of the run's users (source item ids, oldest
first).

Usage (RUN: a run with data, sids and sft; see bench/README.md):
  python bench/serve.py --run RUN [--model sft] [--clients 1,8,32] [--seconds 20]
       [--soak 10000] [--out bench/results/serve_scientific.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
from common import Conn, call, free_port, preamble, sgrec_command, sgrec_env, write_json

from sgrec_cli.serve.recommend import Recommender, Request

BATCHING_OFF = ["--max-batch", "1"]


def histories(run: Path, n: int, seed: int) -> list[list[str]]:
    """Training histories (source ids) of up to ``n`` users of the run, shuffled."""
    items = [json.loads(line)["id"] for line in open(run / "data" / "items.jsonl")]
    hists = []
    for line in open(run / "data" / "sequences.jsonl"):
        seq = json.loads(line)["items"][:-2]  # leave out the validation and test targets
        if seq:
            hists.append([str(items[i]) for i in seq])
    random.Random(seed).shuffle(hists)
    return hists[:n]


def percentiles(lat_ms: list[float]) -> dict:
    if not lat_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    a = np.asarray(lat_ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2)}


def in_process(run: Path, model: str, hists: list[list[str]], seconds: float) -> dict:
    """`recommend`'s own throughput (model loaded once): one request per call, and 32."""
    rec = Recommender(run, model, device="cpu")
    queries = [rec.resolve(Request(None, h, "bench"), 10, True) for h in hists]
    rec.answer(queries[:4])  # warm-up
    out = {}
    for per_call in (1, 32):
        done, start, i = 0, time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            batch = [queries[(i + j) % len(queries)] for j in range(per_call)]
            rec.answer(batch)
            done += per_call
            i += per_call
        wall = time.perf_counter() - start
        out[f"requests_per_call_{per_call}"] = {"requests": done, "seconds": round(wall, 2),
                                                "requests_per_s": round(done / wall, 2)}
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    def __init__(self, run: Path, model: str, extra: list[str]):
        self.port = free_port()
        self.cmd = sgrec_command("serve", "--run", str(run), "--model", model, "--port",
                                 str(self.port), "--device", "cpu", *extra)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=sgrec_env())

    async def ready(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.proc.stderr.read()}")
            try:
                if (await call(self.port, "GET", "/ready"))[0] == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.2)
        raise SystemExit("server not ready")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {"exit_code": None, "stopped_cleanly": False}
        return {"exit_code": self.proc.returncode,
                "stopped_cleanly": self.proc.returncode == 0
                and "server stopped on SIGTERM" in stderr}


async def load(port: int, bodies: list[dict], concurrency: int, seconds: float,
               max_requests: int) -> dict:
    """``concurrency`` clients, each sending its next request once the last is answered."""
    lat, statuses, errors = [], {}, 0
    sent = 0
    stop_at = time.perf_counter() + seconds

    async def one_client():
        nonlocal sent, errors
        conn = await Conn.open(port)
        while time.perf_counter() < stop_at and sent < max_requests:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            try:
                status, answer = await conn.request("POST", "/recommend", body)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200 and len(answer["items"]) == body["k"]:
                    lat.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1
            except Exception:  # noqa: BLE001 - a failed request is counted, not fatal
                errors += 1
                await conn.close()
                conn = await Conn.open(port)
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {"clients": concurrency, "requests": sent, "ok": len(lat), "failed": errors,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "seconds": round(wall, 2), "requests_per_s": round(len(lat) / wall, 2),
            **percentiles(lat)}


MALFORMED = [  # (body, content, expected status)
    ("bad-json", b'{"history": ["1", ', 400),
    ("unknown-item", {"history": ["no-such-item"], "k": 10}, 422),
    ("unknown-user", {"user": "no-such-user", "k": 10}, 422),
    ("k-zero", {"history": None, "k": 0}, 422),
    ("k-string", {"history": None, "k": "10"}, 422),
    ("both", {"history": None, "user": "?", "k": 10}, 422),
    ("not-object", b"[1, 2, 3]", 400),
]


async def soak(server: Server, valid: list[dict], n: int, concurrency: int,
               seed: int) -> dict:
    """``n`` requests, one in five malformed (of the kinds above, in turn), ``concurrency`` at a
    time: each malformed one must get its status, each valid one its k items."""
    rng = random.Random(seed)
    plan = []
    for i in range(n):
        if i % 5 == 4:
            name, body, status = MALFORMED[(i // 5) % len(MALFORMED)]
            if isinstance(body, dict):
                body = dict(body)
                if body.get("history", "") is None:
                    body["history"] = valid[i % len(valid)]["history"]
            plan.append((name, body, status))
        else:
            plan.append(("valid", valid[i % len(valid)], 200))
    rng.shuffle(plan)
    rss_start = rss_kib(server.proc.pid)
    peak = rss_start
    wrong: dict[str, int] = {}
    counts: dict[str, int] = {}
    series: list[tuple[int, float]] = []  # (requests sent, RSS MiB) every 1,000 requests
    nxt = 0

    async def one_client():
        nonlocal nxt, peak
        conn = await Conn.open(server.port)
        while nxt < len(plan):
            name, body, status = plan[nxt]
            nxt += 1
            counts[name] = counts.get(name, 0) + 1
            try:
                got, answer = await conn.request("POST", "/recommend", body)
                good = got == status and (
                    status != 200 and "\n" not in answer.get("error", "\n")
                    or status == 200 and len(answer["items"]) == body["k"])
            except Exception:  # noqa: BLE001 - counted as a wrong answer
                good = False
                await conn.close()
                conn = await Conn.open(server.port)
            if not good:
                wrong[name] = wrong.get(name, 0) + 1
            if nxt % 1000 == 0:
                series.append((nxt, round(rss_kib(server.proc.pid) / 1024, 1)))
                peak = max(peak, rss_kib(server.proc.pid))
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    rss_end = rss_kib(server.proc.pid)
    alive = (await call(server.port, "GET", "/health"))[0] == 200
    return {"requests": n, "clients": concurrency, "seconds": round(wall, 2),
            "by_kind": counts, "wrong_answers": wrong, "all_answered_as_expected": not wrong,
            "rss_start_mib": round(rss_start / 1024, 1), "rss_end_mib": round(rss_end / 1024, 1),
            "rss_peak_mib": round(max(peak, rss_end) / 1024, 1), "rss_mib_every_1000": series,
            "alive_after": alive}


async def main_async(args) -> dict:
    run = Path(args.run)
    hists = histories(run, 2000, args.seed)
    bodies = [{"history": h, "k": 10} for h in hists]
    out = {**preamble(), "run": str(run), "model": args.model,
           "protocol": f"clients send the next request when the last is answered, for "
                       f"{args.seconds} s or {args.max_requests} requests; histories are "
                       "training sequences of the run's users; k 10, history excluded",
           "in_process": in_process(run, args.model, hists[:256], args.in_process_seconds),
           "settings": {}}
    settings = {"batching-on": args.on_flags.split(), "batching-off": BATCHING_OFF}
    for name, extra in settings.items():
        server = Server(run, args.model, extra)
        await server.ready()
        rows = []
        for body in bodies[:8]:  # warm-up
            await call(server.port, "POST", "/recommend", body)
        for c in args.clients:
            row = await load(server.port, bodies, c, args.seconds, args.max_requests)
            print(f"{name} C={c}: {row['requests_per_s']} req/s, p50 {row['p50_ms']} ms, "
                  f"p99 {row['p99_ms']} ms, failed {row['failed']}", flush=True)
            rows.append(row)
        info = (await call(server.port, "GET", "/info"))[1]
        out["settings"][name] = {"flags": extra, "rows": rows,
                                 "server_counters": info["counters"], **server.stop()}
    on = {r["clients"]: r for r in out["settings"]["batching-on"]["rows"]}
    off = {r["clients"]: r for r in out["settings"]["batching-off"]["rows"]}
    out["speedup_on_vs_off"] = {str(c): round(on[c]["requests_per_s"]
                                              / off[c]["requests_per_s"], 2)
                                for c in args.clients if off[c]["requests_per_s"]}
    if args.soak:
        server = Server(run, args.model, settings["batching-on"])
        await server.ready()
        out["soak"] = await soak(server, bodies, args.soak, args.soak_clients, args.seed)
        out["soak"].update(server.stop())
        print(f"soak: {json.dumps(out['soak'])}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--model", default="sft")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("--in-process-seconds", type=float, default=10.0)
    ap.add_argument("--soak", type=int, default=0, help="soak requests (0: no soak)")
    ap.add_argument("--soak-clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--on-flags", default="",
                    help="serve flags of the batching-on setting (default: serve's defaults), "
                         "e.g. '--batch-wait-ms 20'")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    out = asyncio.run(main_async(args))
    if args.out:
        write_json(Path(args.out), out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
