"""The keys the plugin holds: the node's grant key (signs grants for the hook) and the extender's public key."""

from __future__ import annotations

from tessera.assignment import AssignmentError, load_public_key
from tessera.log import get_logger
from tessera.nodekey import node_grant_key

log = get_logger("deviceplugin")
__all__ = ["extender_public_key", "node_grant_key"]


def extender_public_key(path: str):
    """The extender's public key, or None (assignments then cannot be trusted: best fit only)."""
    try:
        return load_public_key(path)
    except (OSError, AssignmentError, ValueError) as err:
        log.warning("assignment_key_unavailable", path=path, reason=str(err),
                    effect="extender assignments are ignored; the plugin's own best fit is used")
        return None
