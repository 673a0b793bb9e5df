"""The admission webhook's latency while hostile clients hold its port (issue 14: one idle connection
used to stop it).

    .venv/bin/python bench/webhook_bench.py [--calls 100] [--rounds 3] [--clients 200]

``tessera-extender`` runs in its own process against the embedded API server (a few MPS nodes, so the
webhook completes ``mps-memory``); this process calls ``POST /mutate`` with an AdmissionReview as the
API server does, over one kept-alive TLS connection (``keep-alive``) and over a new TLS connection per
call (``new conn``: accept and handshake included). Meanwhile a third process holds the port with
0 clients, 1 idle client, ``--clients`` idle clients, or ``--clients`` slow clients (half trickle a
ClientHello byte by byte, half trickle a request head inside a finished TLS handshake). The
extender's request timeout is raised so none is cut off while measured. Scenarios take turns for
``--rounds`` rounds of ``--calls`` calls each, so the machine's noise falls on all of them alike.
The goal: p99 unchanged within noise (the ratio to 0 clients), and the extender's threads bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simcluster.extenders import free_port, spawn_extender, wait_healthy  # noqa: E402
from simcluster.apiserver import ApiServer  # noqa: E402
from simcluster.cluster import NodeSpec  # noqa: E402
from simcluster.lightnodes import light_node_object  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.pki import write_webhook_pki  # noqa: E402
from tessera.table import render_table  # noqa: E402

SCENARIOS = ("0 clients", "1 idle", "N idle", "N slow")


def review(i: int) -> bytes:
    limits = {"nvidia.com/mps-core": "50", "cpu": "2", "memory": "4Gi"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "default"},
           "spec": {"containers": [{"name": "main", "image": "cuda", "resources": {"limits": limits,
                                                                                   "requests": dict(limits)}}]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": f"u{i}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                   "operation": "CREATE", "namespace": "default", "object": pod}}).encode()


def hold_clients(port: int, ca_file: str, scenario: str, n: int, pipe) -> None:
    """In a process of its own: hold the port as ``scenario`` says until told to stop."""
    from tessera.slowclients import SlowClients, client_hello

    tls = ssl.create_default_context(cafile=ca_file)
    tls.check_hostname = False
    address = ("127.0.0.1", port)
    inside, raw = SlowClients(address, tls=tls), SlowClients(address)
    if scenario == "1 idle":
        raw.idle(1)
    elif scenario == "N idle":
        raw.idle(n)
    elif scenario == "N slow":
        inside.trickling(n // 2)
        raw.trickling(n - n // 2, payload=client_hello())
    inside.start()
    raw.start()
    pipe.send(inside.connected + raw.connected)
    pipe.recv()  # stop
    pipe.send(inside.connected + raw.connected)
    inside.close()
    raw.close()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def call(conn: http.client.HTTPSConnection, i: int) -> float:
    t0 = time.perf_counter()
    conn.request("POST", "/mutate", review(i), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    took = (time.perf_counter() - t0) * 1000
    assert resp.status == 200 and answer["response"]["allowed"] is True, answer
    return took


def measure(port: int, ctx: ssl.SSLContext, calls: int) -> tuple[list[float], list[float]]:
    """``calls`` calls on one kept-alive connection, then ``calls`` on a new connection each."""
    kept = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=ctx)
    warm = [call(kept, i) for i in range(calls + 1)][1:]  # the first pays the handshake
    kept.close()
    fresh = []
    for i in range(calls):
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=ctx)
        fresh.append(call(conn, i))
        conn.close()
    return warm, fresh


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=100, help="calls per scenario per round, each way")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=200, help="N: idle or slow clients")
    args = p.parse_args(argv)
    configure_logging("warning", "json", stream=open("/dev/null", "w"))  # noqa: SIM115
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="tessera-webhookbench-") as tmp, ApiServer() as srv:
        workdir = Path(tmp)
        for i in range(4):
            srv.registry.create("nodes", light_node_object(NodeSpec(f"gpu-{i}", "T4", 4, mode="mps")))
        write_webhook_pki(workdir / "pki", ["localhost"], ["127.0.0.1"])
        ca_file = workdir / "pki" / "ca.crt"
        listen, webhook = f"127.0.0.1:{free_port()}", free_port()
        proc = spawn_extender(srv.write_kubeconfig(workdir / "kubeconfig"), workdir, listen,
                              webhook_listen=f"127.0.0.1:{webhook}", tls_cert_path=str(workdir / "pki" / "tls.crt"),
                              tls_key_path=str(workdir / "pki" / "tls.key"),
                              extra_args=["--no-leader-election", "--http-request-timeout-s", "3600",
                                          "--http-max-connections", str(args.clients * 2 + 16)])
        try:
            wait_healthy(f"http://{listen}", 120)
            ctx = ssl.create_default_context(cafile=str(ca_file))
            measure(webhook, ctx, args.calls)  # warm-up, not counted
            samples = {s: ([], [], [], 0) for s in SCENARIOS}
            for _ in range(args.rounds):
                for scenario in SCENARIOS:
                    mine, theirs = spawn.Pipe()
                    holder = spawn.Process(target=hold_clients, args=(webhook, str(ca_file), scenario, args.clients,
                                                                      theirs), daemon=True)
                    holder.start()
                    held = mine.recv()
                    warm, fresh = measure(webhook, ctx, args.calls)
                    threads = threads_of(proc.pid)
                    mine.send("stop")
                    still = mine.recv()
                    holder.join(30)
                    kept, new, counts, most = samples[scenario]
                    kept += warm
                    new += fresh
                    counts.append((held, still))
                    samples[scenario] = (kept, new, counts, max(most, threads))
        finally:
            proc.terminate()
            proc.wait(10)
    base = samples["0 clients"]
    rows = []
    for scenario in SCENARIOS:
        kept, new, counts, threads = samples[scenario]
        held = min(h for h, _ in counts)
        kept_through = min(s for _, s in counts)
        p50, p99 = percentile(kept, 0.5), percentile(kept, 0.99)
        n50, n99 = percentile(new, 0.5), percentile(new, 0.99)
        rows.append([scenario.replace("N", str(args.clients)), f"{held}/{kept_through}", f"{p50:.2f}", f"{p99:.2f}",
                     f"{p50 / percentile(base[0], 0.5):.2f}", f"{p99 / percentile(base[0], 0.99):.2f}",
                     f"{n50:.2f}", f"{n99:.2f}", f"{n50 / percentile(base[1], 0.5):.2f}",
                     f"{n99 / percentile(base[1], 0.99):.2f}", threads])
    print(render_table(
        ["clients held", "connected before/after", "keep-alive p50 ms", "p99 ms", "p50 ratio", "p99 ratio",
         "new conn p50 ms", "p99 ms", "p50 ratio", "p99 ratio", "extender threads"], rows,
        title=f"POST /mutate over TLS, {args.rounds} rounds x {args.calls} calls per scenario each way "
              f"(ratios: to 0 clients)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
