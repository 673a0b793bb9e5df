"""The extender across a signing-key rotation: after it switches to the new key, the pods it bound with
the old one keep their grants in its cache (rebuilt from the API server on restart) while the old public
key is trusted, and the metric counts them per key; new binds are signed with the new key; once the old
key is dropped its assignments are refused, as is one whose key id was changed."""

from __future__ import annotations

import copy
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from extender_builders import make_node
from extender_builders import pod as make_pod
from test_bind_reads_no_assignment_back import BindingApi

from extender.cache import ClusterCache
from extender.daemon import trusted_keys
from extender.metrics import ExtenderMetrics
from extender.placement.policies import PolicyContext
from extender.verbs import ExtenderVerbs
from tessera import ANNOTATION_ASSIGNMENT
from tessera.signingkeys import key_id, public_pem

def bound_by(key, cache: ClusterCache, name: str, core: int = 30, gib: int = 4) -> dict:
    """The pod as the API server holds it after ``key``'s extender bound it to n1."""
    pod = make_pod({"nvidia.com/mps-core": str(core), "nvidia.com/mps-memory": str(gib)}, name=name)
    api = BindingApi(pod)
    body = {"PodName": name, "PodNamespace": "ns", "PodUID": pod["metadata"]["uid"], "Node": "n1"}
    assert ExtenderVerbs(cache, api, key, PolicyContext(), ExtenderMetrics()).bind(json.dumps(body).encode()) == \
        {"Error": ""}
    return api.bound


def cache_of(keys) -> ClusterCache:
    cache = ClusterCache(public_key=keys)
    cache.fleet.add(make_node("n1", gpus=2))
    return cache


def gpus_held(cache: ClusterCache, key: str) -> bool:
    """Whether the pod holds GPU grants (a bound pod without a trusted assignment holds its CPU alone)."""
    placement = cache.placements().get(key)
    return placement is not None and bool(placement.grants)


def key_counts(cache: ClusterCache) -> dict[str, float]:
    families = {f.name: f for f in ExtenderMetrics(cache).registry.collect()}
    return {s.labels["key_id"]: s.value for s in families["tessera_assignments_by_signing_key"].samples}


def test_old_keys_grants_survive_the_switch_and_go_when_the_key_is_dropped(tmp_path):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    old_pod = bound_by(old, cache_of(old.public_key()), "before")
    held = cache_of(old.public_key())
    held.pod_event("ADDED", old_pod)
    before = held.placements()["ns/before"]

    # steps 1 and 2: every verifier trusts old and new; the extender restarts signing with the new key
    (tmp_path / "extender.pub").write_bytes(public_pem(new.public_key()) + public_pem(old.public_key()))
    keys = trusted_keys(new, str(tmp_path / "extender.pub"))
    assert keys.ids == (key_id(new.public_key()), key_id(old.public_key()))
    rotated = cache_of(keys)
    rotated.pod_event("ADDED", old_pod)
    assert gpus_held(rotated, "ns/before") and rotated.placements()["ns/before"] == before, \
        "the old key's grant is still held"
    new_pod = bound_by(new, rotated, "after", core=20, gib=2)  # another shape: not held back behind "before"
    assert json.loads(new_pod["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])["keyId"] == key_id(new.public_key())
    rotated.pod_event("ADDED", new_pod)
    assert key_counts(rotated) == {key_id(old.public_key()): 1, key_id(new.public_key()): 1}

    # a key id changed to the other trusted key is refused; the pod keeps what it was seen holding
    forged = copy.deepcopy(old_pod)
    value = json.loads(forged["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])
    forged["metadata"]["annotations"][ANNOTATION_ASSIGNMENT] = json.dumps({**value, "keyId": key_id(new.public_key())})
    fresh = cache_of(keys)
    fresh.pod_event("ADDED", forged)
    assert not gpus_held(fresh, "ns/before")

    # step 3 too early: a restart trusting the new key alone refuses what the old one signed
    dropped = cache_of(trusted_keys(new, ""))
    for pod in (old_pod, new_pod):
        dropped.pod_event("ADDED", pod)
    assert not gpus_held(dropped, "ns/before") and gpus_held(dropped, "ns/after")
    assert key_counts(dropped) == {key_id(new.public_key()): 1}
