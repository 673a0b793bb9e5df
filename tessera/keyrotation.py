"""Rotating the extender's signing key in a keys folder (``deploy/keys``) without voiding live grants.

The folder holds ``extender.key`` (the private key the extender signs with) and ``extender.pub``
(every public key verifiers trust: the Secret the device plugins and the extender mount). A rotation is
three steps, each followed by applying the folder to the cluster (README, Rotating the signing key):

1. ``stage``: a new pair; its private half waits in ``extender.next.key``, its public half joins
   ``extender.pub``, so every verifier trusts old and new before anything is signed with the new one.
2. ``promote``: ``extender.next.key`` becomes ``extender.key`` (the old private key is kept as
   ``extender.key.previous``, for a rollback of this step, until ``drop-previous``); the extender now
   signs with the new key and still trusts the old one's assignments.
3. ``drop-previous``: once no live pod holds an assignment signed by an old key
   (``tessera_assignments_by_signing_key``), ``extender.pub`` keeps only the current key.

Run as ``python -m tessera.keyrotation stage|promote|drop-previous|show KEYS_DIR`` (make-keys.sh does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tessera.assignment import AssignmentError, generate_keypair, load_private_key
from tessera.signingkeys import TrustedKeys, key_id, load_trusted_keys, public_pem

PRIVATE, PUBLIC, NEXT, PREVIOUS = "extender.key", "extender.pub", "extender.next.key", "extender.key.previous"


class RotationError(AssignmentError):
    """A rotation step that cannot be taken now; the message says why and what to do."""


def _write_public(keys: Path, trusted: TrustedKeys) -> None:
    tmp = keys / (PUBLIC + ".tmp")
    tmp.write_bytes(b"".join(public_pem(k) for k in trusted))
    os.replace(tmp, keys / PUBLIC)  # never a half-written key set


def _current(keys: Path):
    if not (keys / PRIVATE).exists():
        raise RotationError(f"{keys / PRIVATE} does not exist: make the keys first (make-keys.sh)")
    return load_private_key(str(keys / PRIVATE))


def stage(keys: Path) -> str:
    """Step 1: a new key pair, trusted beside the current one, not yet signing. Returns its key id."""
    current = _current(keys)
    if (keys / NEXT).exists():
        raise RotationError(f"{keys / NEXT} exists: a rotation is staged already; promote it first")
    if (keys / PREVIOUS).exists():
        raise RotationError(f"{keys / PREVIOUS} exists: the last rotation is not finished; drop-previous first")
    trusted = load_trusted_keys(str(keys / PUBLIC))
    new = generate_keypair(str(keys / NEXT), str(keys / (NEXT + ".pub")))
    (keys / (NEXT + ".pub")).unlink()
    _write_public(keys, TrustedKeys([current.public_key(), *trusted, new.public_key()]))
    return key_id(new.public_key())


def promote(keys: Path) -> str:
    """Step 2: the staged key becomes the signing key. Returns its key id."""
    if not (keys / NEXT).exists():
        raise RotationError(f"{keys / NEXT} does not exist: stage a rotation first (--rotate)")
    new, trusted = load_private_key(str(keys / NEXT)), load_trusted_keys(str(keys / PUBLIC))
    if trusted.get(key_id(new.public_key())) is None:
        raise RotationError(f"{keys / PUBLIC} does not trust the staged key {key_id(new.public_key())}: "
                            "the device plugins would refuse what it signs")
    os.replace(keys / PRIVATE, keys / PREVIOUS)
    os.replace(keys / NEXT, keys / PRIVATE)
    return key_id(new.public_key())


def drop_previous(keys: Path) -> list[str]:
    """Step 3: only the signing key stays trusted. Returns the key ids dropped."""
    if (keys / NEXT).exists():
        raise RotationError(f"{keys / NEXT} exists: promote the staged key before dropping the others")
    current = _current(keys).public_key()
    dropped = [k for k in load_trusted_keys(str(keys / PUBLIC)).ids if k != key_id(current)]
    _write_public(keys, TrustedKeys([current]))
    if (keys / PREVIOUS).exists():
        (keys / PREVIOUS).unlink()
    return dropped


def show(keys: Path) -> str:
    """The key ids in the folder: which one signs, which are staged, which are trusted."""
    lines = [f"signing: {key_id(_current(keys).public_key())} ({keys / PRIVATE})"]
    if (keys / NEXT).exists():
        lines.append(f"staged:  {key_id(load_private_key(str(keys / NEXT)).public_key())} ({keys / NEXT})")
    lines.append(f"trusted: {', '.join(load_trusted_keys(str(keys / PUBLIC)).ids)} ({keys / PUBLIC})")
    return "\n".join(lines)


_NEXT_STEP = {
    "stage": "apply the keys (every device plugin and the extender now trust old and new), then --promote",
    "promote": "apply the keys (the extender restarts signing with the new key), then wait until "
               "tessera_assignments_by_signing_key shows no pod for the old key id, then --drop-previous",
    "drop-previous": "apply the keys: the old key is trusted no more",
}


def main(argv: list[str]) -> int:
    """``stage|promote|drop-previous|show KEYS_DIR``: one step, then what to do next."""
    if len(argv) != 2 or argv[0] not in (*_NEXT_STEP, "show"):
        print("usage: python -m tessera.keyrotation stage|promote|drop-previous|show KEYS_DIR", file=sys.stderr)
        return 2
    step, keys = argv[0], Path(argv[1])
    try:
        if step == "stage":
            print(f"staged key {stage(keys)} in {keys / NEXT}; trusted in {keys / PUBLIC}")
        elif step == "promote":
            print(f"key {promote(keys)} now signs ({keys / PRIVATE}); the old one is kept in {keys / PREVIOUS}")
        elif step == "drop-previous":
            print(f"dropped {', '.join(drop_previous(keys)) or 'no key'} from {keys / PUBLIC}")
        print(show(keys))
    except (OSError, ValueError) as err:
        print(f"make-keys: {step}: {err}", file=sys.stderr)
        return 1
    if step in _NEXT_STEP:
        print(f"next: {_NEXT_STEP[step]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
