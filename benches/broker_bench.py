#!/usr/bin/env python3
"""The broker's figures against the machine's limits, measured in the same run.

Usage: benches/broker_bench.py [--rounds N] [--records N] [--headwater PATH]

Starts `headwater serve` on a fresh data directory and, in each round, interleaves:
iperf3 (one stream on loopback, 3 s), `dd` writing 1 GiB into the data directory's
filesystem (page cache, then with fdatasync), `headwater bench produce` (1 KiB records,
6 partitions, 2 producers, linger 10 ms, acks=all, then acks=1; the Rust producer's default
16 KiB batches and 1 MiB batches; then acks=all with `flush.messages` unbounded, Kafka's
default; each after one uncounted warm-up run), and
`headwater bench consume` of what was produced. Then three runs at a
fixed 50 MB/s with an end-to-end consumer, acks=all. Prints one line per measurement and
medians (with min-max) as a Markdown table. Needs iperf3 and a release build
(`cargo build --release -p headwater-core --bin headwater`).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PORT, IPERF_PORT = 19590, 15290


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def iperf3():
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    out = json.loads(run(["iperf3", "-c", "127.0.0.1", "-p", str(IPERF_PORT), "-t", "3", "-J"]))
    server.wait(10)
    return out["end"]["sum_received"]["bits_per_second"] / 8 / 1e6


def dd(directory, sync):
    path = os.path.join(directory, "dd.tmp")
    args = ["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=1024"] + (["conv=fdatasync"] if sync else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True).stderr
    os.remove(path)
    seconds = float(re.search(r"copied, ([0-9.]+) s", out).group(1))
    return 1024 * 1024 * 1024 / seconds / 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--headwater", default=os.path.expanduser("~/.cache/headwater-target/release/headwater"))
    parser.add_argument("--only", help="run only the produce runs whose label contains this, and no consume "
                        "or fixed-rate runs (for iterating on one figure)")
    args = parser.parse_args()
    hw, bootstrap = args.headwater, f"127.0.0.1:{PORT}"
    data = tempfile.mkdtemp(prefix="headwater-bench-", dir=os.environ.get("BENCH_DIR"))
    server = subprocess.Popen([hw, "serve", "--data-dir", data, "--listen", bootstrap], stdout=subprocess.PIPE, text=True)
    server.stdout.readline()  # "listening on ..."
    results, ratios, loopback = {}, {}, [0.0]

    def record(name, value):
        """A figure, and its ratio to this round's iperf3."""
        results.setdefault(name, []).append(value)
        if "ms" not in name and loopback[0]:
            ratios.setdefault(name, []).append(100 * value / loopback[0])
        print(f"{name}: {value:.0f}", file=sys.stderr, flush=True)

    def fresh_topic(*configs):
        # A fresh topic each time: the disk holds one run's data, and reads start cold in
        # the same way every round.
        subprocess.run([hw, "topic", "delete", "bench", "--bootstrap", bootstrap], capture_output=True)
        extra = [arg for config in configs for arg in ("--config", config)]
        run([hw, "topic", "create", "bench", "--partitions", "6", "--bootstrap", bootstrap, *extra])
        # Start clean: dirty pages left by the previous run would be written back during
        # this one, charging its CPU for the last run's I/O.
        os.sync()

    def produce(acks, batch, extra=()):
        out = run([hw, "bench", "produce", "--bootstrap", bootstrap, "--topic", "bench", "--records",
                   str(args.records), "--record-bytes", "1024", "--partitions", "6", "--acks", acks,
                   "--producers", "2", "--batch-bytes", str(batch), "--linger-ms", "10", "--json", *extra])
        return json.loads(out.strip().splitlines()[-1])

    try:
        for _ in range(args.rounds):
            loopback[0] = 0.0
            record("iperf3 loopback, one stream", iperf3())
            loopback[0] = results["iperf3 loopback, one stream"][-1]
            record("dd 1 GiB, page cache", dd(data, sync=False))
            record("dd 1 GiB, conv=fdatasync", dd(data, sync=True))
            kafka_flush = f"flush.messages={2**63 - 1}"
            transactions = ("--transaction-duration-ms", "100")
            runs = [("all", 16384, "16 KiB batches", (), ()), ("1", 16384, "16 KiB batches", (), ()),
                    ("all", 1 << 20, "1 MiB batches", (), ()), ("1", 1 << 20, "1 MiB batches", (), ()),
                    ("all", 1 << 20, "1 MiB batches, Kafka's flush.messages", (kafka_flush,), ()),
                    ("all", 1 << 20, "1 MiB batches, a transaction every 0.1 s", (), transactions)]
            if args.only:
                runs = [r for r in runs if args.only in f"acks={r[0]}, {r[2]}"]
            for acks, batch, label, configs, extra in runs:
                # A warm-up run first, not counted: on this VM the first run after other
                # work writes into page-cache pages the host has just taken back, at dd's
                # page-cache rate whatever the broker does (benches/README.md).
                fresh_topic(*configs)
                produce(acks, batch, extra)
                fresh_topic(*configs)
                record(f"produce acks={acks}, {label}", produce(acks, batch, extra)["mb_per_s"])
            if not args.only:
                # The same run with no warm-up, after five idle seconds: the pages the last
                # run freed have gone back to the host by then, so this run writes into
                # memory the VM must fault in again, as `dd` into the page cache does.
                fresh_topic()
                time.sleep(5)
                record("produce acks=all, 1 MiB batches, cold memory", produce("all", 1 << 20)["mb_per_s"])
            if args.only:
                continue
            consumed = json.loads(run([hw, "bench", "consume", "--bootstrap", bootstrap, "--topic", "bench",
                                       "--json"]).strip().splitlines()[-1])
            record("consume", consumed["mb_per_s"])
        for _ in range(0 if args.only else 3):
            fresh_topic()
            out = run([hw, "bench", "produce", "--bootstrap", bootstrap, "--topic", "bench", "--records", "500000",
                       "--record-bytes", "1024", "--partitions", "6", "--acks", "all", "--rate", "51200",
                       "--end-to-end", "--json"])
            summary = json.loads(out.strip().splitlines()[-1])
            record("50 MB/s acks=all: end-to-end p99 ms", summary["end_to_end_ms"]["p99"])
            record("50 MB/s acks=all: produce p99 ms", summary["latency_ms"]["p99"])
            # Transactions committed every 100 ms, read at read_committed: a record becomes
            # visible with its transaction's commit.
            fresh_topic()
            out = run([hw, "bench", "produce", "--bootstrap", bootstrap, "--topic", "bench", "--records", "500000",
                       "--record-bytes", "1024", "--partitions", "6", "--acks", "all", "--rate", "51200",
                       "--end-to-end", "--transaction-duration-ms", "100", "--json"])
            summary = json.loads(out.strip().splitlines()[-1])
            record("50 MB/s acks=all, a transaction every 0.1 s, read_committed: end-to-end p99 ms",
                   summary["end_to_end_ms"]["p99"])
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)

    print("| Measurement | Median (min-max) | % of the same round's iperf3: median (min-max) |")
    print("| --- | --- | --- |")
    for name, values in results.items():
        median = statistics.median(values)
        r = ratios.get(name)
        ratio = f"{statistics.median(r):.0f} % ({min(r):.0f}-{max(r):.0f})" if r else ""
        unit = "" if "ms" in name else " MB/s"
        print(f"| {name} | {median:.1f}{unit} ({min(values):.1f}-{max(values):.1f}) | {ratio} |")


main()
