"""The ``tessera`` command: the embedded demo, GPU inventory, cluster inspection, config checks, fake-NVML
fault injection.

Subcommands import what they need when they run, so ``tessera --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from tessera.config import ConfigError
from tessera_cli.demo_control_plane import CHOICES as CONTROL_PLANES, EMBEDDED


def _cmd_demo(args: argparse.Namespace) -> int:
    from tessera_cli.demo import run_demo

    return run_demo(args)


def _cmd_inventory(args: argparse.Namespace) -> int:
    from tessera_cli.inventory_table import print_inventory

    return print_inventory(args.node, as_json=args.output == "json")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from tessera_cli.inspect_table import run_inspect

    return run_inspect(args)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from tessera_cli.config_files import run_check

    return run_check(args)


def _cmd_config_convert(args: argparse.Namespace) -> int:
    from tessera_cli.config_files import run_convert

    return run_convert(args)


def _replay(argv: list[str]) -> int:
    from simcluster.replay import replay_main

    return replay_main(argv)


def _fake_nvml(argv: list[str]) -> int:
    from tessera_cli.fake_nvml import fake_nvml_main

    return fake_nvml_main(argv)


# Subcommands with parsers of their own: everything after the name is theirs, --help included.
DELEGATED = {"replay": _replay, "fake-nvml": _fake_nvml}


PROG = "tessera"
KUBECTL_PROG = "kubectl tessera"  # kubectl runs the kubectl-tessera executable on PATH for `kubectl tessera`


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The ``tessera`` command line; ``prog`` is the name usage lines show (``kubectl tessera`` as a plugin)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Tessera: share NVIDIA GPUs in Kubernetes (whole, MIG, MPS shares, time-sliced).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run Tessera on simulated GPU nodes (embedded control plane, or the real one with --control-plane real) and show what happened",
                          description="Start the embedded cluster (API server, simulated kubelets, fake-GPU "
                                      "nodes) and every Tessera daemon as its own process, run pods of each "
                                      "kind, inject an Xid, and print what happened. With --control-plane "
                                      "real, the same on upstream Kubernetes' control plane.")
    demo.add_argument("--cluster", default=None, metavar="FILE",
                      help="cluster description (YAML); default: the shipped default cluster")
    demo.add_argument("--control-plane", choices=CONTROL_PLANES, default=EMBEDDED,
                      help="embedded (default): simcluster's API server in this process, nothing to build. "
                           "real: etcd, kube-apiserver, kube-controller-manager and kube-scheduler of the pinned "
                           "Kubernetes release as processes, Tessera installed from deploy/ (tessera-extender, its "
                           "webhook, the tessera-scheduler kube-scheduler calling it); needs the binaries: "
                           "`bash scripts/build-kube.sh` (Go, a cold build takes minutes) or KUBEBUILDER_ASSETS "
                           "set to a folder holding etcd, kube-apiserver, kube-controller-manager, "
                           "kube-scheduler and kubectl")
    demo.add_argument("--keep", action="store_true",
                      help="leave the cluster running, write a kubeconfig and print 'export KUBECONFIG=...'; "
                           "Ctrl-C or SIGTERM stops it")
    demo.add_argument("--workdir", default=None, metavar="DIR",
                      help="where node directories, sockets and the kubeconfig go (default: a new temp dir; "
                           "embedded control plane only)")
    demo.add_argument("--png", default="tessera-demo-occupancy.png", metavar="FILE",
                      help="where the picture of GPU occupancy per node goes (default: %(default)s in the "
                           "current directory)")
    demo.set_defaults(func=_cmd_demo)

    inv = sub.add_parser("inventory", help="print the GPUs of this node (real NVML, or a fake node description)",
                         description="Read this node's GPUs through Tessera's NVML layer and print them. "
                                     "With --node, read a fake node description instead of the driver.")
    inv.add_argument("--node", default=None, metavar="FILE|NAME",
                     help="fake node description file, or the name of a shipped one (e.g. a100-80gb-mig); "
                          "default: $TESSERA_FAKE_NVML, else the real driver")
    inv.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    inv.set_defaults(func=_cmd_inventory)

    insp = sub.add_parser("inspect", help="show per node and GPU: mode, health, who holds which share, what is free, "
                                          "fragmentation (also: kubectl tessera inspect)",
                          description="Read the cluster's nodes and pods through a kubeconfig and show, per node "
                                      "and GPU, the mode, health with its reason, who holds which share (pod, its "
                                      "phase, core %, GiB), the free capacity, and the fragmentation the extender "
                                      "measures; per node its address and allocated/total GPU cores and GiB, and "
                                      "the same for the cluster.")
    insp.add_argument("--kubeconfig", default=None, metavar="FILE",
                      help="default: $KUBECONFIG, then ~/.kube/config, then the in-cluster service account")
    insp.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    insp.add_argument("--node", default=None, metavar="NAME", help="show this node only")
    insp.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    insp.add_argument("--shape", action="append", default=None, metavar="RESOURCE=N[,RESOURCE=N]",
                      help="a typical pod to measure fragmentation with, e.g. mps-core=50,mps-memory=8 or "
                           "gpu=1,models=T4|A10; "
                           "repeatable (a repeated shape weighs more); default: learned from the pods holding "
                           "GPU shares, as the extender learns them")
    insp.set_defaults(func=_cmd_inspect)

    cfg = sub.add_parser("config", help="check a Tessera config file; convert NVIDIA's device plugin config",
                         description="Work with Tessera's config file (the one YAML file every daemon reads "
                                     "through --config or $TESSERA_CONFIG).")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = cfg_sub.add_parser(
        "check", help="report every error in a config file, each with its key and line",
        description="Validate a Tessera config file with the same checks the daemons run at start, but report "
                    "every error instead of the first: unknown keys (with the nearest known key), wrong types, "
                    "values out of range, bad choices, GPU indices named twice or given to both the device "
                    "plugin and the DRA driver, malformed extender.typical_shapes. One error a line on stderr, "
                    "as FILE:LINE: KEY: MESSAGE. Exit status: 0 valid, 1 errors found, 2 the file cannot be "
                    "read as YAML (missing, over 1 MiB, not UTF-8, not YAML, nested too deeply).")
    check.add_argument("file", metavar="FILE", help="the Tessera config file (YAML) to check")
    check.set_defaults(func=_cmd_config_check)
    convert = cfg_sub.add_parser(
        "convert", help="rewrite NVIDIA k8s-device-plugin's config file as Tessera's",
        description="Read NVIDIA k8s-device-plugin's config file (version: v1; flags.migStrategy, "
                    "flags.failOnInitError, flags.plugin.deviceListStrategy, sharing.timeSlicing, sharing.mps) "
                    "and write the Tessera config that does the same on stdout. What Tessera cannot carry "
                    "over, or does differently (resource names pods ask for, per-resource replicas), is "
                    "written as '# not carried over: ...' and '# note: ...' comment lines at the top, saying "
                    "what Tessera does instead. The output passes `tessera config check`. Exit status: 0 "
                    "converted, 1 the file is not NVIDIA's config, 2 it cannot be read as YAML.")
    convert.add_argument("file", metavar="FILE",
                         help="NVIDIA's device plugin config file (YAML), as given to its --config-file or "
                              "held in the ConfigMap its Helm chart's config.map names")
    convert.set_defaults(func=_cmd_config_convert)

    replay = sub.add_parser("replay", help="replay the Alibaba GPU trace through the extender's placement policies",
                            add_help=False)
    replay.add_argument("rest", nargs=argparse.REMAINDER)

    fake = sub.add_parser("fake-nvml", help="inject faults into a fake GPU node (Xid, lost GPU, processes)",
                          add_help=False)
    fake.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``tessera``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]](argv[1:])
    args = build_parser(prog).parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tessera inventory | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0


def kubectl_plugin_main() -> int:
    """Entry point of ``kubectl-tessera`` (kubectl runs it as ``kubectl tessera ...``)."""
    return main(sys.argv[1:], prog=KUBECTL_PROG)


if __name__ == "__main__":
    sys.exit(main())
