"""The embedded API server in its own process, with light nodes (no kubelet behind them).

    python -m simcluster.apiserver.serve --port 0 --light-nodes 5000 --model A100-SXM4-40GB --gpus 8 --mode mps
    python -m simcluster.apiserver.serve --cluster simcluster/clusters/default.yaml --kubeconfig /tmp/kc

When it serves, it prints one line on stdout, ``ready <url> nodes=<n>``, and writes a kubeconfig if
asked; it stops on SIGTERM or SIGINT. Benchmarks use it so that the API server's threads and garbage
collection run apart from the client they time, as in a real cluster; ``spawn`` starts it from Python.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from simcluster.apiserver.server import ApiServer
from simcluster.cluster import ClusterDescription, NodeSpec, load_cluster
from simcluster.lightnodes import add_light_nodes
from tessera.log import configure_logging

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = "ready"


def light_cluster(count: int, model: str, gpus: int, mode: str, cpu: int, memory_gib: int) -> ClusterDescription:
    """``count`` alike nodes named ``node-00000``, ``node-00001``, ..."""
    nodes = tuple(NodeSpec(f"node-{i:05d}", model, gpus, mode=mode, cpu_milli=cpu * 1000, memory_mib=memory_gib * 1024)
                  for i in range(count))
    return ClusterDescription(nodes=nodes, source=f"{count} x {gpus} {model} ({mode})")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simcluster.apiserver.serve",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--cluster", help="a cluster description YAML; its nodes are created as light nodes")
    p.add_argument("--light-nodes", type=int, default=0, help="this many alike light nodes (without --cluster)")
    p.add_argument("--model", default="A100-SXM4-40GB", help="a model of the fake NVML catalog")
    p.add_argument("--gpus", type=int, default=8, help="GPUs per light node")
    p.add_argument("--mode", default="mps", choices=["exclusive", "mps", "timeslice"])
    p.add_argument("--cpu", type=int, default=96, help="cores per light node")
    p.add_argument("--memory-gib", type=int, default=768, help="memory per light node")
    p.add_argument("--history-size", type=int, default=200_000, help="watch events kept for resumption")
    p.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    p.add_argument("--log-level", default="warning")
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, "json")
    if args.cluster and args.light_nodes:
        _parser().error("give --cluster or --light-nodes, not both")
    srv = ApiServer(args.host, args.port, history_size=args.history_size).start()
    if args.cluster:
        count = add_light_nodes(srv.registry, load_cluster(args.cluster))
    elif args.light_nodes:
        count = add_light_nodes(srv.registry, light_cluster(args.light_nodes, args.model, args.gpus, args.mode,
                                                             args.cpu, args.memory_gib))
    else:
        count = 0
    if args.kubeconfig:
        srv.write_kubeconfig(args.kubeconfig)
    gc.collect()
    gc.freeze()  # the nodes live as long as the server: no full collection walks them again
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"{READY} {srv.url} nodes={count}", flush=True)
    stop.wait()
    srv.stop()
    return 0


def spawn(args: list[str], timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """This entry point as a subprocess with ``args``, once ready: the process and the server's URL.
    Stop it with ``terminate()``; a process that exits before its ready line raises RuntimeError."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", ""))
                                                       if p)}
    proc = subprocess.Popen([sys.executable, "-m", "simcluster.apiserver.serve", *args], env=env, cwd=str(REPO_ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    if not line.startswith(READY + " "):
        proc.kill()
        raise RuntimeError(f"apiserver did not start: {line.strip() or proc.stderr.read()[-2000:]}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # its logs never fill the pipe
    return proc, line.split()[1]


if __name__ == "__main__":
    sys.exit(main())
