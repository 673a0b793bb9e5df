"""The keys the plugin holds: the node's grant key (signs grants for the hook) and the extender's public key."""

from __future__ import annotations

import os

from tessera.assignment import AssignmentError, load_public_key
from tessera.grant import GrantError, generate_key, load_key
from tessera.log import get_logger

log = get_logger("deviceplugin")


def node_grant_key(path: str) -> bytes:
    """The node key at ``path``, generated (mode 0600) if there is none yet."""
    try:
        return load_key(path)
    except GrantError:
        if os.path.exists(path):
            raise
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        key = generate_key(path)
        log.info("grant_key_generated", path=path)
        return key
    except FileExistsError:  # the hook's installer or a sibling wrote it meanwhile
        return load_key(path)


def extender_public_key(path: str):
    """The extender's public key, or None (assignments then cannot be trusted: best fit only)."""
    try:
        return load_public_key(path)
    except (OSError, AssignmentError, ValueError) as err:
        log.warning("assignment_key_unavailable", path=path, reason=str(err),
                    effect="extender assignments are ignored; the plugin's own best fit is used")
        return None
