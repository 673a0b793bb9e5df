"""The argument parsers of Tessera's daemons, made from their config sections.

Kept apart from the daemons so ``--help`` is the same text whether or not a daemon runs here.
"""

from __future__ import annotations

import argparse

from tessera.config import add_common_flags, add_section_flags


def daemon_parser(prog: str, description: str, section_cls: type, epilog: str | None = None) -> argparse.ArgumentParser:
    """A parser with ``--config``, logging flags and one flag per key of the daemon's config section."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_flags(parser)
    add_section_flags(parser, section_cls)
    return parser
