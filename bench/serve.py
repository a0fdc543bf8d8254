"""Serving latency: in-process top-10 for one user, then HTTP on loopback at a fixed request rate.

Needs a workspace with a champion model (``python -m flows.full`` publishes one). In-process: the
champion's ``recommend`` for random known users, with and without explanations. HTTP: ``python -m serve``
as its own process, an open-loop load of ``--rate`` GET /recommend requests per second (random known
and unknown users, k=10; keep-alive connections from 16 client threads) for ``--seconds`` after a 3-second
warm-up; latency percentiles, errors, and the server's resident memory
at the start and the end. The load generator shares the machine's cores with the server.

    python bench/serve.py [--workspace workspace/amazon-musical-instruments-5core] [--rate 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import percentiles, write_json  # noqa: E402
from tasks.store import DEFAULT_WORKSPACE  # noqa: E402


def in_process(workspace: Path, n: int) -> dict:
    import duckdb
    import numpy as np

    from models.serving.published import load_champion
    from tasks import tables
    from tasks.store import Workspace

    champion = load_champion(workspace, Workspace(Path(workspace)).user_key(create=False))
    with duckdb.connect(str(Path(workspace) / "reclab.duckdb"), read_only=True) as con:  # raw ids, as clients send
        query = f"SELECT DISTINCT user_id FROM {tables.CANONICAL['interactions']} ORDER BY 1"
        known = [u for (u,) in con.execute(query).fetchall()]
    users = np.random.default_rng(0).choice(known, n)
    out = {}
    for explain in (False, True):
        champion.recommend(str(users[0]), 10, explain=explain)  # warm-up
        times = []
        for user in users:
            start = time.perf_counter()
            champion.recommend(str(user), 10, explain=explain)
            times.append(1000 * (time.perf_counter() - start))
        out["explained" if explain else "plain"] = percentiles(times)
    return {"version": champion.version, "users": known[:2000], **out}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_load(workspace: Path, users: list[str], rate: float, seconds: float) -> dict:
    import httpx
    import numpy as np

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "serve", "--workspace", str(workspace), "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not become healthy")
            time.sleep(0.2)
        rng = np.random.default_rng(1)
        picks = [users[i] if rng.random() > 0.05 else f"unknown-{i}" for i in rng.integers(0, len(users), 100_000)]
        paths = [f"/recommend?{urlencode({'user_id': user, 'k': 10})}" for user in picks]
        local = threading.local()
        latencies, errors = [], []

        def one(n: int, record: bool) -> None:
            if not hasattr(local, "conn"):  # one keep-alive connection per client thread (stdlib: light client)
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            start = time.perf_counter()
            try:
                local.conn.request("GET", paths[n % len(paths)])
                response = local.conn.getresponse()
                response.read()
                ok, detail = response.status == 200, response.status
            except (OSError, http.client.HTTPException) as err:
                ok, detail = False, repr(err)
                local.conn.close()
                del local.conn
            if record:
                latencies.append(1000 * (time.perf_counter() - start))
                if not ok:
                    errors.append(str(detail))

        def load(total: int, record: bool) -> float:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=16) as pool:
                for n in range(total):  # open loop: request n is sent at t0 + n / rate, whatever came before
                    delay = t0 + n / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(one, n, record)
            return time.perf_counter() - t0

        load(int(rate * 3), record=False)  # warm-up: connections opened, code paths hot; not measured
        rss_start = rss_mib(server.pid)
        total = int(rate * seconds)
        t0 = time.perf_counter()
        load(total, record=True)
        elapsed = time.perf_counter() - t0
        return {
            "rate": rate,
            "seconds": seconds,
            "achieved_rate": total / elapsed,
            "errors": len(errors),
            "error_examples": errors[:3],
            "latency_ms": percentiles(latencies),
            "server_rss_mib_start": rss_start,
            "server_rss_mib_end": rss_mib(server.pid),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE)
    parser.add_argument("--users", type=int, default=2000, help="in-process requests timed")
    parser.add_argument("--rate", type=float, default=200.0, help="HTTP requests per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    args = parser.parse_args()
    local = in_process(args.workspace, args.users)
    users = local.pop("users")
    print(f"champion {local['version']}: in-process top-10, ms over {args.users} users")
    for kind in ("plain", "explained"):
        p = local[kind]
        print(f"  {kind:<10} p50 {p['p50']:.3f}  p95 {p['p95']:.3f}  p99 {p['p99']:.3f}  max {p['max']:.3f}")
    http = http_load(args.workspace, users, args.rate, args.seconds)
    p = http["latency_ms"]
    print(
        f"HTTP GET /recommend k=10 at {http['rate']:.0f}/s for {http['seconds']:.0f} s (achieved "
        f"{http['achieved_rate']:.1f}/s): p50 {p['p50']:.2f} ms, p95 {p['p95']:.2f} ms, p99 {p['p99']:.2f} ms, "
        f"max {p['max']:.1f} ms, errors {http['errors']} of {p['n']}; server RSS {http['server_rss_mib_start']:.0f}"
        f" -> {http['server_rss_mib_end']:.0f} MiB"
    )
    write_json(args.out, {"in_process_ms": local, "http": http})


if __name__ == "__main__":
    main()
