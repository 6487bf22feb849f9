#!/usr/bin/env python3
"""A three-node cluster's figures, measured in the same run as the machine's loopback limit.

Usage: benches/cluster_bench.py [--rounds N] [--records N] [--headwater PATH]

Starts three `headwater serve` nodes on 127.0.0.1, each a combined broker and controller,
on fresh data directories. In each round:

- iperf3, one stream on loopback for 3 s, and dd writing 1 GiB with a final fdatasync into
  the nodes' filesystem (the same machine's limits, for the ratios: the three nodes share
  one disk, so RF=3 writes every byte three times to it);
- `headwater bench produce` to a fresh topic with replication factor 1, then to one with
  replication factor 3 and min.insync.replicas=2: 1 KiB records, 6 partitions, 2 producers,
  1 MiB batches, linger 10 ms, acks=all; each after an uncounted warm-up run;
- fail-over: a producer at a steady 10 MB/s (acks=all, RF=3) while one node is SIGKILLed
  4 s in; odd rounds kill the active controller's node, even rounds another node. The
  figure is the producer's longest gap between two acknowledgements of one partition,
  which with a steady rate is the time from the kill until that partition's writes are
  acknowledged again (plus at most one record interval). The node is then restarted and
  the round waits until every ISR is whole again.

Prints one line per measurement, then medians (min-max) as a Markdown table. Needs iperf3,
confluent-kafka (its DescribeCluster names the active controller) and a release build
(`cargo build --release -p headwater-core --bin headwater`).
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

IPERF_PORT = 15291


def run(args, **kw):
    done = subprocess.run(args, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iperf3():
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    out = json.loads(run(["iperf3", "-c", "127.0.0.1", "-p", str(IPERF_PORT), "-t", "3", "-J"]))
    server.wait(10)
    return out["end"]["sum_received"]["bits_per_second"] / 8 / 1e6


def dd(directory):
    """Sequential write of 1 GiB with a final fdatasync into the nodes' filesystem, MB/s."""
    path = os.path.join(directory, "dd.tmp")
    out = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=1024", "conv=fdatasync"],
                         check=True, capture_output=True, text=True).stderr
    os.remove(path)
    seconds = float(re.search(r"copied, ([0-9.]+) s", out).group(1))
    return 1024 * 1024 * 1024 / seconds / 1e6


class Cluster:
    def __init__(self, hw, root, size=3):
        self.hw, self.root = hw, root
        self.nodes = {i: {"listen": f"127.0.0.1:{free_port()}", "controller": f"127.0.0.1:{free_port()}"}
                      for i in range(1, size + 1)}
        self.voters = ",".join(f"{i}@{n['controller']}" for i, n in self.nodes.items())
        self.procs = {}
        for i in self.nodes:
            self.start(i)

    def start(self, i):
        node = self.nodes[i]
        proc = subprocess.Popen(
            [self.hw, "serve", "--node-id", str(i), "--listen", node["listen"], "--controller-listen",
             node["controller"], "--voters", self.voters, "--data-dir", os.path.join(self.root, f"node-{i}")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "error"})
        proc.stdout.readline()  # "headwater listening on ..."
        self.procs[i] = proc

    def kill(self, i):
        self.procs.pop(i).kill()

    def stop(self):
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(30)

    def bootstrap(self):
        return ",".join(self.nodes[i]["listen"] for i in self.procs)

    def controller(self):
        """The active controller's node id, from DescribeCluster."""
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": self.bootstrap()})
        return admin.describe_cluster(request_timeout=10).result().controller.id

    def describe(self, topic):
        out = subprocess.run([self.hw, "topic", "describe", topic, "--bootstrap", self.bootstrap()],
                             capture_output=True, text=True).stdout
        return [(int(m.group(1)), int(m.group(2)), m.group(3))
                for m in re.finditer(r"partition (\d+) leader (-?\d+) replicas \[[^\]]*\] isr \[([^\]]*)\]", out)]

    def wait_isr(self, topic, size, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            partitions = self.describe(topic)
            if partitions and all(len(isr.split(",")) == size for _, _, isr in partitions):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{topic}: ISR not back to {size}: {self.describe(topic)}")


def bench(hw, bootstrap, topic, *extra):
    out = run([hw, "bench", "produce", "--bootstrap", bootstrap, "--topic", topic, "--json", *extra])
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--headwater", default=os.path.expanduser("~/.cache/headwater-target/release/headwater"))
    args = parser.parse_args()
    hw = args.headwater
    root = tempfile.mkdtemp(prefix="headwater-cluster-bench-", dir=os.environ.get("BENCH_DIR"))
    cluster = Cluster(hw, root)
    time.sleep(3)  # brokers register and are unfenced
    results = {}

    def record(name, value):
        results.setdefault(name, []).append(value)
        print(f"{name}: {value:.1f}", file=sys.stderr, flush=True)

    load = ["--records", str(args.records), "--record-bytes", "1024", "--partitions", "6", "--producers", "2",
            "--batch-bytes", "1048576", "--linger-ms", "10", "--acks", "all"]
    try:
        for round_ in range(args.rounds):
            loopback = iperf3()
            record("iperf3 loopback MB/s", loopback)
            disk = dd(root)
            record("dd 1 GiB conv=fdatasync MB/s", disk)
            figures = {}
            for rf in (1, 3):
                topic = f"rf{rf}-{round_}"
                configs = ["--replication-factor", str(rf)] + (["--topic-config", "min.insync.replicas=2"] if rf == 3 else [])
                bench(hw, cluster.bootstrap(), topic + "-warmup", *configs, *load)
                figures[rf] = bench(hw, cluster.bootstrap(), topic, *configs, *load)["mb_per_s"]
                record(f"RF={rf} acks=all MB/s", figures[rf])
                record(f"RF={rf} % of loopback", 100 * figures[rf] / loopback)
            record("RF=3 / RF=1 %", 100 * figures[3] / figures[1])
            # Every node's log is on the one disk: RF=3 writes each byte three times.
            record("RF=3 bytes written to disk, % of dd", 100 * 3 * figures[3] / disk)

            topic = f"failover-{round_}"
            bench(hw, cluster.bootstrap(), topic, "--replication-factor", "3", "--topic-config",
                  "min.insync.replicas=2", "--partitions", "3", "--records", "100")
            cluster.wait_isr(topic, 3)
            controller = cluster.controller()
            kill_controller = round_ % 2 == 1
            victim = controller if kill_controller else next(i for i in cluster.procs if i != controller)
            producer = subprocess.Popen(
                [hw, "bench", "produce", "--bootstrap", cluster.bootstrap(), "--topic", topic, "--json",
                 "--records", "120000", "--rate", "10000", "--record-bytes", "1024", "--acks", "all"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(4)
            cluster.kill(victim)
            out, _ = producer.communicate(timeout=120)
            gap = json.loads(out.strip().splitlines()[-1])["max_ack_gap_ms"]
            kind = "active controller's node" if kill_controller else "a broker that is not the controller"
            record(f"fail-over ms, SIGKILL of {kind}", gap)
            cluster.start(victim)
            cluster.wait_isr(topic, 3)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    print("\n| Measurement | Median | Min-max |\n| --- | --- | --- |")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} |")


if __name__ == "__main__":
    main()
