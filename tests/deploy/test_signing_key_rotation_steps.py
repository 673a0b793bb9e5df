"""make-keys.sh rotates the extender's signing key in three steps, each applied before the next: the new
public key is trusted everywhere before it signs anything, the old one stays trusted until dropped, and
the rendered Secrets follow (their generated names change, so the pods that mount them roll)."""

from __future__ import annotations

import base64
import subprocess


from manifests import find, kubectl, make_keys_env, prepare, render
from tessera.assignment import (
    Assignment, AssignmentError, ResourceAssignment, load_private_key, sign_assignment, verify_assignment,
)
from tessera.signingkeys import key_id, load_trusted_keys, parse_public_keys


def make_keys(deploy, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(deploy / "make-keys.sh"), *args, str(deploy / "keys")], env=make_keys_env(),
                          capture_output=True, text=True, timeout=60)


def signed(deploy) -> str:
    doc = Assignment("n1", "uid-1", {"main": {"nvidia.com/gpu": ResourceAssignment(("GPU-a",), ("GPU-a",))}})
    return sign_assignment(doc, load_private_key(str(deploy / "keys" / "extender.key")))


def verifies(value: str, deploy) -> bool:
    try:
        verify_assignment(value, "uid-1", load_trusted_keys(str(deploy / "keys" / "extender.pub")))
    except AssignmentError:
        return False
    return True


def public_secret_keys(deploy) -> tuple[str, list[str]]:
    """The rendered public-key Secret's name and the key ids it holds."""
    secret = find(render(deploy), "Secret", "tessera-assignment-public-key")
    pems = base64.b64decode(secret["data"]["extender.pub"])
    return secret["metadata"]["name"], [key_id(k) for k in parse_public_keys(pems, "Secret")]


def test_rotate_promote_drop(tmp_path):
    deploy = prepare(tmp_path)
    old_id = key_id(load_private_key(str(deploy / "keys" / "extender.key")).public_key())
    by_old = signed(deploy)
    render_too = kubectl() is not None
    name_before = public_secret_keys(deploy)[0] if render_too else ""

    done = make_keys(deploy, "--promote")
    assert done.returncode == 1 and "stage a rotation first" in done.stderr
    done = make_keys(deploy, "--rotate")
    assert done.returncode == 0, done.stderr
    assert "next: apply the keys" in done.stdout
    trusted = load_trusted_keys(str(deploy / "keys" / "extender.pub")).ids
    new_id = trusted[1]
    assert trusted[0] == old_id and new_id != old_id
    assert signed(deploy) == by_old, "the old key still signs until --promote"
    assert make_keys(deploy, "--rotate").returncode == 1, "one rotation at a time"
    if render_too:
        name, ids = public_secret_keys(deploy)
        assert ids == [old_id, new_id] and name != name_before

    assert make_keys(deploy, "--promote").returncode == 0
    by_new = signed(deploy)
    assert key_id(load_private_key(str(deploy / "keys" / "extender.key")).public_key()) == new_id
    assert verifies(by_old, deploy) and verifies(by_new, deploy)
    assert "signing: " + new_id in make_keys(deploy, "--show").stdout

    assert make_keys(deploy, "--drop-previous").returncode == 0
    assert load_trusted_keys(str(deploy / "keys" / "extender.pub")).ids == (new_id,)
    assert not verifies(by_old, deploy) and verifies(by_new, deploy)
    assert not (deploy / "keys" / "extender.key.previous").exists()
    if render_too:
        assert public_secret_keys(deploy)[1] == [new_id]


def test_a_plain_run_keeps_the_signing_key_and_its_rotated_set(tmp_path):
    deploy = prepare(tmp_path)
    assert make_keys(deploy, "--rotate").returncode == 0
    assert make_keys(deploy, "--promote").returncode == 0
    before = (deploy / "keys" / "extender.pub").read_bytes(), (deploy / "keys" / "extender.key").read_bytes()
    done = make_keys(deploy)
    assert done.returncode == 0, done.stderr
    assert ((deploy / "keys" / "extender.pub").read_bytes(), (deploy / "keys" / "extender.key").read_bytes()) == before
    assert make_keys(deploy, "--bogus").returncode == 2
