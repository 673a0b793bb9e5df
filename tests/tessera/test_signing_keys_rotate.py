"""Signing-key rotation at the document level: an assignment names the key that signed it; verifiers
trust a set of keys, so an old key's assignments keep verifying while it is trusted and stop once it is
dropped; a forged key id, an untrusted signer or a garbled key file is refused, and says why."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deviceplugin.keys import extender_public_key
from tessera.assignment import Assignment, AssignmentError, ResourceAssignment, sign_assignment, verify_assignment
from tessera.signingkeys import TrustedKeys, key_id, load_trusted_keys, public_pem

OLD, NEW = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
BOTH, NEW_ONLY = TrustedKeys([NEW.public_key(), OLD.public_key()]), TrustedKeys([NEW.public_key()])


def doc(uid: str = "uid-1") -> Assignment:
    return Assignment(node="n1", pod_uid=uid, containers={"main": {
        "nvidia.com/mps-core": ResourceAssignment(("GPU-a",), ("GPU-a::core::0",), core=1)}})


def legacy(d: Assignment, private) -> str:
    """An assignment as the extender wrote them before key ids: no keyId, the message without one."""
    message = b"tessera.io/assignment/v1\n" + d.canonical_json() + b"\n" + d.pod_uid.encode()
    body = d.to_dict()
    body["signature"] = base64.urlsafe_b64encode(private.sign(message)).rstrip(b"=").decode()
    return json.dumps(body)


def test_new_assignments_name_the_key_that_signed_them():
    value = sign_assignment(doc(), NEW)
    assert json.loads(value)["keyId"] == key_id(NEW.public_key()) != key_id(OLD.public_key())
    assert verify_assignment(value, "uid-1", BOTH, node="n1").key_id == key_id(NEW.public_key())
    assert verify_assignment(value, "uid-1", NEW.public_key()).key_id == key_id(NEW.public_key())  # one key, as before


@pytest.mark.parametrize("write", [sign_assignment, legacy], ids=["with key id", "before key ids"])
def test_an_old_keys_assignment_verifies_while_that_key_is_trusted_and_not_after(write):
    value = write(doc(), OLD)
    got = verify_assignment(value, "uid-1", BOTH, node="n1")
    assert got == doc() and got.key_id == key_id(OLD.public_key())
    with pytest.raises(AssignmentError, match="bad signature"):
        verify_assignment(value, "uid-1", NEW_ONLY, node="n1")


def test_a_forged_key_id_or_an_untrusted_signer_is_refused():
    value = json.loads(sign_assignment(doc(), OLD))
    for forged_id, reason in ((key_id(NEW.public_key()), "bad signature: not written by the extender"),
                              ("0123456789abcdef", "signed by key 0123456789abcdef, which is not trusted")):
        with pytest.raises(AssignmentError, match=reason):
            verify_assignment(json.dumps({**value, "keyId": forged_id}), "uid-1", BOTH)
    dropped = {k: v for k, v in value.items() if k != "keyId"}  # the key id is signed: no downgrade
    with pytest.raises(AssignmentError, match="bad signature"):
        verify_assignment(json.dumps(dropped), "uid-1", BOTH)
    with pytest.raises(AssignmentError, match="keyId must be"):
        verify_assignment(json.dumps({**value, "keyId": 7}), "uid-1", BOTH)
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(AssignmentError, match="not trusted here"):
        verify_assignment(sign_assignment(doc(), stranger), "uid-1", BOTH)
    with pytest.raises(AssignmentError, match="bad signature"):
        verify_assignment(legacy(doc(), stranger), "uid-1", BOTH)


def test_key_files_hold_one_key_several_or_a_folder_of_them(tmp_path):
    one = tmp_path / "one.pub"
    one.write_bytes(public_pem(OLD.public_key()))
    assert load_trusted_keys(str(one)).ids == (key_id(OLD.public_key()),)
    bundle = tmp_path / "extender.pub"
    bundle.write_bytes(public_pem(NEW.public_key()) + public_pem(OLD.public_key()))
    assert load_trusted_keys(str(bundle)).ids == BOTH.ids
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "a.pub").write_bytes(public_pem(NEW.public_key()))
    (folder / "b.pub").write_bytes(public_pem(OLD.public_key()))
    (folder / "..data").mkdir()  # a mounted Secret's own entries are not keys
    assert load_trusted_keys(str(folder)).ids == BOTH.ids
    assert extender_public_key(str(bundle)).ids == BOTH.ids


@pytest.mark.parametrize("garble, reason", [
    (lambda pem: pem.replace(b"MCowBQYDK2Vw", b"MCowBQYDK2Vx"), "key 2 of 2 cannot be read"),
    (lambda pem: pem[:-40], "text outside the PEM blocks"),
    (lambda pem: pem.replace(b"PUBLIC KEY", b"PRIVATE KEY"), "key 2 of 2 is a PRIVATE KEY"),
])
def test_a_file_with_one_garbled_key_is_refused_whole_naming_it(tmp_path, garble, reason):
    bundle = tmp_path / "extender.pub"
    bundle.write_bytes(public_pem(NEW.public_key()) + garble(public_pem(OLD.public_key())))
    with pytest.raises(AssignmentError, match=reason) as err:
        load_trusted_keys(str(bundle))
    assert str(bundle) in str(err.value)
    assert extender_public_key(str(bundle)) is None  # the plugin says so and trusts no assignment


def test_an_empty_key_file_or_folder_is_refused(tmp_path):
    (tmp_path / "extender.pub").write_bytes(b"\n")
    with pytest.raises(AssignmentError, match="no PEM public key"):
        load_trusted_keys(str(tmp_path / "extender.pub"))
    (tmp_path / "keys").mkdir()
    with pytest.raises(AssignmentError, match="no key files"):
        load_trusted_keys(str(tmp_path / "keys"))
