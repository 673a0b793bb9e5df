"""The keys the plugin holds: the node's grant key (signs grants for the hook) and the extender's public keys."""

from __future__ import annotations

from tessera.assignment import AssignmentError
from tessera.log import get_logger
from tessera.nodekey import node_grant_key
from tessera.signingkeys import TrustedKeys, load_trusted_keys

log = get_logger("deviceplugin")
__all__ = ["extender_public_key", "node_grant_key"]


def extender_public_key(path: str) -> TrustedKeys | None:
    """The extender's trusted public keys (one, or the current and previous ones while a key rotation
    drains), or None (assignments then cannot be trusted: best fit only). A file or folder with one
    unreadable key is refused whole, and says which key."""
    try:
        keys = load_trusted_keys(path)
    except (OSError, AssignmentError, ValueError) as err:
        log.warning("assignment_key_unavailable", path=path, reason=str(err),
                    effect="extender assignments are ignored; the plugin's own best fit is used")
        return None
    log.info("assignment_keys_loaded", path=path, key_ids=list(keys.ids))
    return keys
