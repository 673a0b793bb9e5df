"""NodePrepareResources and NodeUnprepareResources over the driver's real unix socket, as the kubelet
calls them: what the container will get (the claim's CDI spec), idempotent repeats, a restart, and one
claim's failure kept to that claim."""

from __future__ import annotations

import json

from draharness import GPUS, KEY, NODE, PIPE, SHM, claim
from tessera.grant import container_env, verify_env
from tessera.kubeletapi import dra_pb2

UID_A, UID_B = "11111111-aaaa-4000-8000-000000000001", "22222222-bbbb-4000-8000-000000000002"


def prepare(d, *claims: tuple[str, str, str]):
    request = dra_pb2.NodePrepareResourcesRequest(
        claims=[dra_pb2.Claim(namespace=ns, name=name, uid=uid) for ns, name, uid in claims])
    return d.stub.NodePrepareResources(request, timeout=10)


def unprepare(d, *claims: tuple[str, str, str]):
    request = dra_pb2.NodeUnprepareResourcesRequest(
        claims=[dra_pb2.Claim(namespace=ns, name=name, uid=uid) for ns, name, uid in claims])
    return d.stub.NodeUnprepareResources(request, timeout=10)


def edits_of(d, uid: str) -> dict[str, dict]:
    spec = json.loads((d.cdi_dir / f"k8s.gpu.tessera.io-claim_{uid}.json").read_text())
    assert spec["kind"] == "k8s.gpu.tessera.io/claim"
    return {device["name"]: device["containerEdits"] for device in spec["devices"]}


def test_a_claim_s_gpu_comes_with_its_device_nodes_variables_and_a_grant_the_hook_verifies(driver):
    d = driver({("team-a", "train"): claim("train", UID_A, [("gpu", "gpu-5")])})
    answer = prepare(d, ("team-a", "train", UID_A)).claims[UID_A]
    assert answer.error == ""
    (device,) = answer.devices
    assert (list(device.request_names), device.pool_name, device.device_name) == (["gpu"], NODE, "gpu-5")
    assert list(device.cdi_device_ids) == [f"k8s.gpu.tessera.io/claim={UID_A}-gpu-5"]
    edits = edits_of(d, UID_A)[f"{UID_A}-gpu-5"]
    nodes = {n["path"]: n["hostPath"] for n in edits["deviceNodes"]}
    # GPU 5's minor number is 2, not 5: the node is named by the minor.
    assert nodes == {p: str(d.root / "host") + p for p in
                     ("/dev/nvidia2", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")}
    env = dict(item.split("=", 1) for item in edits["env"])
    (grant_name,) = [n for n in env if n.startswith("TESSERA_GRANT_")]
    grant = verify_env(grant_name, env[grant_name], KEY)
    assert grant.node == NODE and grant.uuids == [GPUS[1].uuid] and "/dev/nvidia2" in grant.paths
    assert {k: v for k, v in env.items() if k != grant_name} == container_env([grant])
    assert (d.cdi_dir / f"k8s.gpu.tessera.io-claim_{UID_A}.json").stat().st_mode & 0o077 == 0
    (recorded,) = json.loads(d.checkpoint.path.read_text())["claims"][UID_A]["devices"]
    assert "mps_cores" not in recorded and "mps_memory_gib" not in recorded, "no share: no share keys"


def test_prepare_again_and_after_a_restart_answers_the_same_without_reading_the_claim(driver):
    d = driver({("team-a", "train"): claim("train", UID_A, [("gpu", "gpu-4")])})
    first = prepare(d, ("team-a", "train", UID_A)).claims[UID_A]
    spec_before = edits_of(d, UID_A)
    again = prepare(d, ("team-a", "train", UID_A)).claims[UID_A]
    d.start()   # a restart: the checkpoint is all it knows
    after_restart = prepare(d, ("team-a", "train", UID_A)).claims[UID_A]
    assert first == again == after_restart
    assert edits_of(d, UID_A) == spec_before   # the same grant: a container already started with it
    assert d.reads == [("team-a", "train")]


def test_unprepare_removes_the_spec_and_the_record_even_after_a_restart_and_repeats_quietly(driver):
    d = driver({("team-a", "train"): claim("train", UID_A, [("gpu", "gpu-4")])})
    prepare(d, ("team-a", "train", UID_A))
    d.start()
    assert unprepare(d, ("team-a", "train", UID_A)).claims[UID_A].error == ""
    assert not (d.cdi_dir / f"k8s.gpu.tessera.io-claim_{UID_A}.json").exists()
    assert UID_A not in json.loads(d.checkpoint.path.read_text())["claims"]
    assert unprepare(d, ("team-a", "train", UID_A)).claims[UID_A].error == ""


def test_two_requests_get_a_grant_each(driver):
    d = driver({("team-a", "pair"): claim("pair", UID_A, [("left", "gpu-4"), ("right", "gpu-5")])})
    answer = prepare(d, ("team-a", "pair", UID_A)).claims[UID_A]
    assert {(tuple(x.request_names), x.device_name) for x in answer.devices} == {(("left",), "gpu-4"),
                                                                                 (("right",), "gpu-5")}
    grants = set()
    for edits in edits_of(d, UID_A).values():
        env = dict(item.split("=", 1) for item in edits["env"])
        grants |= {k for k in env if k.startswith("TESSERA_GRANT_")}
    assert len(grants) == 2


def test_each_claim_fails_on_its_own_with_a_reason(driver):
    d = driver({
        ("team-a", "good"): claim("good", UID_A, [("gpu", "gpu-4")]),
        ("team-a", "elsewhere"): claim("elsewhere", "u-2", [("gpu", "gpu-4")], pool="gpu-node-8"),
        ("team-a", "pending"): claim("pending", "u-3", [], allocated=False),
        ("team-a", "unknown"): claim("unknown", "u-4", [("gpu", "gpu-9")]),
        ("team-a", "replaced"): claim("replaced", "u-new", [("gpu", "gpu-4")]),
    })
    answers = prepare(d, ("team-a", "good", UID_A), ("team-a", "elsewhere", "u-2"), ("team-a", "pending", "u-3"),
                      ("team-a", "unknown", "u-4"), ("team-a", "replaced", "u-old"), ("team-a", "gone", "u-6")).claims
    assert answers[UID_A].error == "" and len(answers[UID_A].devices) == 1
    assert "not this node's ('gpu-node-7')" in answers["u-2"].error
    assert "is not allocated" in answers["u-3"].error
    assert "'gpu-9' is not one this node publishes (gpu-4, gpu-5, gpu-6)" in answers["u-4"].error
    assert "deleted and made again" in answers["u-old"].error
    assert "does not exist" in answers["u-6"].error
    assert not list(d.cdi_dir.glob("*u-*"))


def test_an_mps_share_comes_as_the_device_plugin_s_pair_of_grants_with_the_daemon_s_folders(driver):
    d = driver({("team-a", "infer"): claim("infer", UID_A, [("share", "gpu-6")],
                                           consumed={"cores": "30", "memory": "8Gi"})})
    answer = prepare(d, ("team-a", "infer", UID_A)).claims[UID_A]
    assert answer.error == ""
    (device,) = answer.devices
    assert device.device_name == "gpu-6" and device.share_id == "5ba7e0de-0000-4000-8000-000000000000"
    edits = edits_of(d, UID_A)[f"{UID_A}-gpu-6"]
    env = dict(item.split("=", 1) for item in edits["env"])
    grants = [verify_env(k, v, KEY) for k, v in env.items() if k.startswith("TESSERA_GRANT_")]
    assert sorted((g.resource, g.core, g.mem_gib) for g in grants) == [
        ("nvidia.com/mps-core", 30, None), ("nvidia.com/mps-memory", None, 8)]
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "30" and env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=8G"
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == PIPE and env["NVIDIA_VISIBLE_DEVICES"] == GPUS[2].uuid
    assert {(m["hostPath"], m["containerPath"]) for m in edits["mounts"]} == {(PIPE, PIPE), (SHM, "/dev/shm")}
    assert {n["path"] for n in edits["deviceNodes"]} >= {"/dev/nvidia0"}   # GPU 6's minor
    # the share, recorded for the device plugin's supervisor of the MPS daemon (its defaults), and read back
    (recorded,) = json.loads(d.checkpoint.path.read_text())["claims"][UID_A]["devices"]
    assert (recorded["mps_cores"], recorded["mps_memory_gib"]) == (30, 8)
    d.start()
    assert [(x.mps_cores, x.mps_memory_gib) for x in d.checkpoint.claims[UID_A].devices] == [(30, 8)]


def test_an_mps_allocation_that_records_no_usable_share_is_refused(driver):
    d = driver({("team-a", "old"): claim("old", "u-1", [("share", "gpu-6")]),
                ("team-a", "odd"): claim("odd", "u-2", [("share", "gpu-6")], consumed={"cores": "150", "memory": "8Gi"}),
                ("team-a", "half"): claim("half", "u-3", [("share", "gpu-6")],
                                          consumed={"cores": "30", "memory": "1536Mi"})})
    answers = prepare(d, ("team-a", "old", "u-1"), ("team-a", "odd", "u-2"), ("team-a", "half", "u-3")).claims
    assert "records no usable consumedCapacity" in answers["u-1"].error
    assert "an MPS share is 1..100 cores and whole GiB" in answers["u-2"].error
    assert "an MPS share is 1..100 cores and whole GiB" in answers["u-3"].error


def test_a_timeslice_gpu_comes_whole_to_each_claim_with_a_gpu_shared_grant(driver):
    from draplugin.devices import select_gpus

    published = {g.name: g for g in select_gpus(GPUS, [4, 5], {4: "timeslice"})}
    d = driver({("team-a", "a"): claim("a", UID_A, [("gpu", "gpu-4")], consumed={"replicas": "1"}),
                ("team-a", "b"): claim("b", UID_B, [("gpu", "gpu-4")], consumed={"replicas": "1"}),
                ("team-a", "mixed"): claim("mixed", "u-3", [("gpu", "gpu-4"), ("gpu", "gpu-5")])},
               published=published)
    answers = prepare(d, ("team-a", "a", UID_A), ("team-a", "b", UID_B), ("team-a", "mixed", "u-3")).claims
    for uid in (UID_A, UID_B):
        assert answers[uid].error == ""
        env = dict(item.split("=", 1) for item in edits_of(d, uid)[f"{uid}-gpu-4"]["env"])
        (grant,) = [verify_env(k, v, KEY) for k, v in env.items() if k.startswith("TESSERA_GRANT_")]
        assert (grant.resource, grant.uuids) == ("nvidia.com/gpu.shared", [GPUS[0].uuid])
        assert env["NVIDIA_VISIBLE_DEVICES"] == GPUS[0].uuid and "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env
    assert "mixes time-sliced and exclusive GPUs" in answers["u-3"].error


def test_two_shares_of_one_claim_on_one_gpu_each_get_their_own_grant(driver):
    """kube-scheduler may put two requests of one claim on the same MPS GPU: each container must get its
    own request's share, not the larger one of the two."""
    shares = claim("two", UID_A, [("small", "gpu-6"), ("large", "gpu-6")], consumed={"cores": "10", "memory": "1Gi"})
    shares["status"]["allocation"]["devices"]["results"][1]["consumedCapacity"] = {"cores": "40", "memory": "10Gi"}
    d = driver({("team-a", "two"): shares})
    answer = prepare(d, ("team-a", "two", UID_A)).claims[UID_A]
    assert answer.error == ""
    ids = {tuple(device.request_names): list(device.cdi_device_ids) for device in answer.devices}
    assert ids[("small",)] != ids[("large",)]
    edits = edits_of(d, UID_A)
    for request, cores in (("small", "10"), ("large", "40")):
        (cdi_id,) = ids[(request,)]
        env = dict(item.split("=", 1) for item in edits[cdi_id.split("=", 1)[1]]["env"])
        assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == cores


def test_a_share_allocated_before_the_gpu_became_exclusive_is_refused(driver):
    """The admin turned an MPS GPU exclusive while a claim's share was allocated on it: the claim does not
    get the whole GPU."""
    d = driver({("team-a", "old"): claim("old", UID_A, [("share", "gpu-5")], consumed={"cores": "30", "memory": "8Gi"})})
    answer = prepare(d, ("team-a", "old", UID_A)).claims[UID_A]
    assert "was allocated as a share, but this node now serves it whole" in answer.error
    assert not (d.cdi_dir / f"k8s.gpu.tessera.io-claim_{UID_A}.json").exists()


def test_an_unprepare_that_overtakes_its_prepare_waits_for_it_and_removes_what_it_made(driver):
    """The kubelet may call NodeUnprepareResources for a claim whose NodePrepareResources is still running
    (a retry after a timeout): the unprepare must not answer 'unknown claim' and leave the prepare's spec
    and record behind."""
    import threading

    entered, gate = threading.Event(), threading.Event()

    class SlowClaims(dict):   # the API server answers the prepare's read slowly
        def __getitem__(self, key):
            entered.set()
            gate.wait(60)
            return super().__getitem__(key)

    d = driver(SlowClaims({("team-a", "train"): claim("train", UID_A, [("gpu", "gpu-5")])}))
    answers = []
    preparing = threading.Thread(target=lambda: answers.append(prepare(d, ("team-a", "train", UID_A))))
    preparing.start()
    assert entered.wait(60), "the prepare never read its claim"
    unpreparing = threading.Thread(target=lambda: answers.append(unprepare(d, ("team-a", "train", UID_A))))
    unpreparing.start()
    unpreparing.join(timeout=2)   # it must still be waiting (never a pass criterion: a slow machine only waits longer)
    assert unpreparing.is_alive(), "the unprepare answered before the claim's prepare ended"
    gate.set()
    preparing.join(60)
    unpreparing.join(60)
    assert all(a.claims[UID_A].error == "" for a in answers)
    assert not (d.cdi_dir / f"k8s.gpu.tessera.io-claim_{UID_A}.json").exists() and UID_A not in d.checkpoint.claims
