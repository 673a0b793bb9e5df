"""The node's grant key as the node daemons that sign grants hold it (the device plugin and the DRA
driver): read, or generated on first start. The hook only reads it (:func:`tessera.grant.load_key`)."""

from __future__ import annotations

import os

from tessera.grant import GrantError, generate_key, load_key
from tessera.log import get_logger

log = get_logger("nodekey")


def node_grant_key(path: str) -> bytes:
    """The node key at ``path``, generated (mode 0600) if there is none yet; GrantError when the file is
    there but unusable (too open, too short, not root's)."""
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
    except FileExistsError:  # the hook's installer or a sibling daemon wrote it meanwhile
        return load_key(path)
