"""``tessera-hook``: flags and config; the hook itself lands with its issue."""

from __future__ import annotations

import sys

from tessera.cli_parsers import daemon_parser
from tessera.config import HookConfig


def build_parser():
    parser = daemon_parser(
        "tessera-hook",
        "Tessera OCI hook, run by runc or crun at container start (createRuntime/prestart) and at\n"
        "poststop. Reads the OCI state on stdin and the bundle's config.json, verifies the signed\n"
        "grant, and keeps every GPU that was not granted out of the container.",
        HookConfig,
    )
    parser.add_argument("stage", nargs="?", choices=("prestart", "createRuntime", "poststop", "install"),
                        help="hook stage as configured in the runtime, or 'install'")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("tessera-hook: the hook is not built yet (only --help works in this release)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
