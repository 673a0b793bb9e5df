"""``tessera-device-plugin``: flags and config; the daemon itself lands with its issue."""

from __future__ import annotations

import sys

from tessera.cli_parsers import daemon_parser
from tessera.config import DevicePluginConfig


def build_parser():
    return daemon_parser(
        "tessera-device-plugin",
        "Tessera device plugin: one per GPU node. Registers nvidia.com/gpu, nvidia.com/mig-<profile>,\n"
        "nvidia.com/mps-core, nvidia.com/mps-memory and nvidia.com/gpu.shared with the kubelet,\n"
        "keeps their health, and answers allocations from the signed ledger.\n"
        "Set TESSERA_FAKE_NVML=<node description file> to run on a fake GPU node.",
        DevicePluginConfig,
    )


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("tessera-device-plugin: the device plugin is not built yet (only --help works in this release)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
