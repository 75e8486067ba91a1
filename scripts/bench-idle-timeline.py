#!/usr/bin/env python3
"""Issue 21 item 5 through the real binary: requests to an idle timeline with 0 and
with N un-flushed records in another tenant's timeline.

Usage: scripts/bench-idle-timeline.py [path to strata] [records, default 1000000]
(build first: `cargo build --release --bin strata`). Starts `strata pageserver` on
a fresh directory with checkpoints far away (nothing flushes), creates two tenants,
and prints the median latency of timeline info, a page read and a 10-record ingest
on the idle one, before and after ingesting the records into the busy one over
HTTP. Numbers are printed, never asserted.
"""
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

STRATA = sys.argv[1] if len(sys.argv) > 1 else "target/release/strata"
RECORDS = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
BUSY, IDLE = "01" * 16, "02" * 16
TL = "03" * 16


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


def lsn(n):
    return f"{n >> 32:X}/{n & 0xFFFFFFFF:X}"


def image(key, at):
    return {"key": f"{key:016X}", "lsn": lsn(at), "record": {"image": "ab" * 16}}


def main():
    d = tempfile.mkdtemp(prefix="strata-bench-")
    port = free_port()
    subprocess.run([STRATA, "init", "--dir", d], check=True, stdout=subprocess.DEVNULL)
    node = subprocess.Popen(
        [STRATA, "pageserver", "--config", f"{d}/strata.toml",
         "-c", f"listen_http=127.0.0.1:{port}",
         "-c", "tuning.checkpoint_distance_bytes=1000000000000",
         "-c", "tuning.checkpoint_timeout_ms=86400000"],
        stdout=subprocess.DEVNULL, stderr=open(f"{d}/node.log", "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                call(base, "GET", "/v1/tenant")
                break
            except Exception:
                time.sleep(0.1)
        for t in (BUSY, IDLE):
            call(base, "POST", "/v1/tenant", {"tenant_id": t})
            call(base, "POST", f"/v1/tenant/{t}/timeline", {"timeline_id": TL})
        idle_lsn = 16
        call(base, "POST", f"/v1/tenant/{IDLE}/timeline/{TL}/ingest",
             {"records": [image(i % 10, idle_lsn + i * 8) for i in range(100)]})
        idle_lsn += 800

        def measure(rounds=300):
            nonlocal idle_lsn
            times = ([], [], [])
            for _ in range(rounds):
                t0 = time.perf_counter()
                call(base, "GET", f"/v1/tenant/{IDLE}/timeline/{TL}")
                t1 = time.perf_counter()
                call(base, "GET", f"/v1/tenant/{IDLE}/timeline/{TL}/page?key={3:016X}&lsn={lsn(idle_lsn - 8)}")
                t2 = time.perf_counter()
                call(base, "POST", f"/v1/tenant/{IDLE}/timeline/{TL}/ingest",
                     {"records": [image(i, idle_lsn + i * 8) for i in range(10)]})
                t3 = time.perf_counter()
                idle_lsn += 80
                for i, t in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                    times[i].append(t * 1e3)
            return [statistics.median(t) for t in times]

        print(f"{'un-flushed elsewhere':>22} {'info ms':>9} {'read ms':>9} {'ingest ms':>9}")
        before = measure()
        print(f"{0:>22} {before[0]:>9.3f} {before[1]:>9.3f} {before[2]:>9.3f}")
        at, left, started = 16, RECORDS, time.perf_counter()
        while left > 0:
            n = min(left, 10_000)
            call(base, "POST", f"/v1/tenant/{BUSY}/timeline/{TL}/ingest",
                 {"records": [image((at // 8 + i) % 100_000, at + i * 8) for i in range(n)]})
            at, left = at + n * 8, left - n
        took = time.perf_counter() - started
        info = json.loads(call(base, "GET", f"/v1/tenant/{BUSY}/timeline/{TL}"))
        after = measure()
        print(f"{RECORDS:>22} {after[0]:>9.3f} {after[1]:>9.3f} {after[2]:>9.3f}")
        print(f"ratio: info {after[0] / before[0]:.2f}x, read {after[1] / before[1]:.2f}x, "
              f"ingest {after[2] / before[2]:.2f}x; {RECORDS} records ingested in {took:.1f} s; "
              f"busy timeline: {info}")
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
