"""``tessera-extender``: flags and config; the daemon itself lands with its issue."""

from __future__ import annotations

import sys

from tessera.cli_parsers import daemon_parser
from tessera.config import ExtenderConfig


def build_parser():
    return daemon_parser(
        "tessera-extender",
        "Tessera scheduler extender and admission webhook: kube-scheduler calls it to filter,\n"
        "prioritize, bind and preempt pods that ask for Tessera resources; it chooses the node and\n"
        "the GPU and writes the signed assignment before it binds.",
        ExtenderConfig,
    )


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("tessera-extender: the extender is not built yet (only --help works in this release)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
