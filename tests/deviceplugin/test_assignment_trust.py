"""The extender's signed assignment steers GetPreferredAllocation; a forged or copied one changes nothing.

A pod whose assignment the extender signed gets exactly the assigned IDs. A pod carrying another
pod's assignment, or one signed by someone else's key, gets the plugin's own best fit: what any
pod could get anyway. The plugin logs each rejection.
"""

from __future__ import annotations

import base64
import json

from simcluster.cluster import NodeSpec
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT, ANNOTATION_INVENTORY
from tessera.assignment import Assignment, ResourceAssignment, generate_keypair, sign_assignment
from tessera.inventory import NodeInventory

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


def signed(key, node: str, uid: str, gpu: str, cores: range, gib: range, write=sign_assignment) -> str:
    doc = Assignment(node=node, pod_uid=uid, containers={"main": {
        CORE: ResourceAssignment((gpu,), tuple(f"{gpu}::core::{n}" for n in cores), core=len(cores)),
        MEM: ResourceAssignment((gpu,), tuple(f"{gpu}::mem::{n}" for n in gib), mem_gib=len(gib))}})
    return write(doc, key)


def signed_before_key_ids(doc: Assignment, key) -> str:
    """The assignment as the extender wrote it before assignments named their key: no keyId."""
    value = json.loads(sign_assignment(doc, key))
    message = b"tessera.io/assignment/v1\n" + doc.canonical_json() + b"\n" + doc.pod_uid.encode()
    value.pop("keyId")
    value["signature"] = base64.urlsafe_b64encode(key.sign(message)).rstrip(b"=").decode()
    return json.dumps(value)


def held(pods, name: str, eventually) -> dict[str, set[str]]:
    doc = eventually(lambda: pods.get(name)["metadata"].get("annotations", {}).get(ANNOTATION_ALLOCATED),
                     timeout=10, what=f"{name} allocated")
    return {r: set(g["deviceIDs"]) for r, g in json.loads(doc)["containers"]["main"].items()}


def admit(pods, manifest, eventually, name: str, annotation=None) -> str:
    uid = pods.create(manifest(name, {CORE: 30, MEM: 4}))["metadata"]["uid"]
    if annotation is not None:
        pods.annotate(name, {ANNOTATION_ASSIGNMENT: annotation(uid) if callable(annotation) else annotation})
    pods.bind(name, "mps")
    eventually(lambda: pods.get(name)["status"].get("phase") == "Running", timeout=10, what=f"{name} Running")
    return uid


def mps_node(embedded, eventually, public_keys):
    """An MPS node of two GPUs whose plugin trusts ``public_keys``, ready: (cluster, pods, GPU UUIDs)."""
    cluster, _, pods = embedded(NodeSpec(name="mps", model="A100-SXM4-80GB", gpus=2, mode="mps"),
                                extender_public_key=str(public_keys))
    inventory = eventually(lambda: pods.node("mps")["metadata"].get("annotations", {}).get(ANNOTATION_INVENTORY),
                           timeout=20, what="inventory")
    eventually(lambda: pods.node("mps")["status"].get("allocatable", {}).get(CORE) == "200", timeout=20,
               what="cores allocatable")
    return cluster, pods, tuple(g.uuid for g in NodeInventory.from_json(inventory).gpus)


def test_signed_assignment_is_followed_and_forgeries_are_not(embedded, manifest, eventually, tmp_path):
    extender_key = generate_keypair(str(tmp_path / "extender.key"), str(tmp_path / "extender.pub"))
    attacker_key = generate_keypair(str(tmp_path / "attacker.key"), str(tmp_path / "attacker.pub"))
    cluster, pods, (gpu0, gpu1) = mps_node(embedded, eventually, tmp_path / "extender.pub")

    # the extender's choice: GPU 1, cores 60..89, GiB 70..73 -- not what best fit would pick
    admit(pods, manifest, eventually, "chosen", lambda uid: signed(extender_key, "mps", uid, gpu1, range(60, 90),
                                                                     range(70, 74)))
    chosen = held(pods, "chosen", eventually)
    assert chosen[CORE] == {f"{gpu1}::core::{n}" for n in range(60, 90)}
    assert chosen[MEM] == {f"{gpu1}::mem::{n}" for n in range(70, 74)}
    original = pods.get("chosen")["metadata"]["annotations"][ANNOTATION_ASSIGNMENT]

    # copied onto another pod: the UID does not match, so it is ignored
    admit(pods, manifest, eventually, "copied", original)
    copied = held(pods, "copied", eventually)
    # forged with another key, asking for the start of GPU 0
    admit(pods, manifest, eventually, "forged", lambda uid: signed(attacker_key, "mps", uid, gpu0, range(0, 30),
                                                                     range(0, 4)))
    forged = held(pods, "forged", eventually)
    assert forged[CORE] != {f"{gpu0}::core::{n}" for n in range(0, 30)}
    for ids in (copied, forged):
        gpus = {i.split("::")[0] for i in ids[CORE] | ids[MEM]}
        assert gpus == {gpu1}, "best fit packs onto the GPU already in use, core and memory together"
    all_core = [chosen[CORE], copied[CORE], forged[CORE]]
    assert sum(len(s) for s in all_core) == len(set().union(*all_core)) == 90, "nothing handed out twice"
    log = (cluster.nodes["mps"].root / "device-plugin.log").read_text()
    assert log.count('"assignment_rejected"') >= 2
    assert "copied from another pod" in log and "bad signature" in log
    # the ledger of the pods without a valid assignment says the plugin chose
    for name in ("copied", "forged"):
        ann = pods.get(name)["metadata"]["annotations"][ANNOTATION_ASSIGNMENT]
        assert json.loads(ann)["writtenBy"] == "device-plugin"


def test_a_rotated_out_key_still_steers_while_trusted_and_a_stranger_does_not(embedded, manifest, eventually,
                                                                               tmp_path):
    """Mid-rotation: the node's key file holds the new key and the previous one. An assignment the old key
    signed (named, or written before key ids) is followed; one a key outside the file signed is not."""
    from tessera.signingkeys import key_id, public_pem

    old = generate_keypair(str(tmp_path / "old.key"), str(tmp_path / "old.pub"))
    new = generate_keypair(str(tmp_path / "new.key"), str(tmp_path / "new.pub"))
    stranger = generate_keypair(str(tmp_path / "stranger.key"), str(tmp_path / "stranger.pub"))
    (tmp_path / "extender.pub").write_bytes(public_pem(new.public_key()) + public_pem(old.public_key()))
    cluster, pods, (gpu0, gpu1) = mps_node(embedded, eventually, tmp_path / "extender.pub")

    admit(pods, manifest, eventually, "old", lambda uid: signed(old, "mps", uid, gpu1, range(60, 90), range(70, 74)))
    assert held(pods, "old", eventually)[CORE] == {f"{gpu1}::core::{n}" for n in range(60, 90)}
    admit(pods, manifest, eventually, "legacy", lambda uid: signed(old, "mps", uid, gpu1, range(10, 40), range(10, 14),
                                                                     signed_before_key_ids))
    assert held(pods, "legacy", eventually)[CORE] == {f"{gpu1}::core::{n}" for n in range(10, 40)}
    admit(pods, manifest, eventually, "stranger", lambda uid: signed(stranger, "mps", uid, gpu0, range(0, 30),
                                                                     range(0, 4)))
    assert held(pods, "stranger", eventually)[CORE] != {f"{gpu0}::core::{n}" for n in range(0, 30)}
    log = (cluster.nodes["mps"].root / "device-plugin.log").read_text()
    assert key_id(new.public_key()) in log and key_id(old.public_key()) in log  # assignment_keys_loaded
    assert f"signed by key {key_id(stranger.public_key())}, which is not trusted" in log
