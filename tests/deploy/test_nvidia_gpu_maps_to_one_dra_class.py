"""A plain ``nvidia.com/gpu`` pod can be served through Tessera's DRA driver: deploy/ maps the resource to
exactly one DeviceClass (two classes mapping one name leave kube-scheduler to pick one), that class selects
whole GPUs of gpu.tessera.io only, and the node label tessera-extender reads to leave such nodes to
kube-scheduler is the one that places the driver's DaemonSet."""

from __future__ import annotations

from collections import Counter

from manifests import find, scheduler_configuration

from extender.dranodes import LABEL_DRA_DRIVER


def _mapped(objects: list[dict]) -> dict[str, dict]:
    classes = [o for o in objects if o["kind"] == "DeviceClass" and o["spec"].get("extendedResourceName")]
    counts = Counter(c["spec"]["extendedResourceName"] for c in classes)
    assert [name for name, n in counts.items() if n > 1] == [], "two DeviceClasses map one extended resource"
    return {c["spec"]["extendedResourceName"]: c for c in classes}


def test_nvidia_gpu_maps_to_one_class_of_whole_tessera_gpus(rendered):
    for overlay, objects in rendered.items():
        mapped = _mapped(objects)
        assert set(mapped) == {"nvidia.com/gpu"}, overlay
        selectors = [s["cel"]["expression"] for s in mapped["nvidia.com/gpu"]["spec"]["selectors"]]
        assert selectors == ['device.driver == "gpu.tessera.io" && '
                             'device.attributes["gpu.tessera.io"].mode == "exclusive"'], overlay
        # The claim class stays as it was: a claim naming gpu.tessera.io is not an extended resource's.
        assert "extendedResourceName" not in find(objects, "DeviceClass", "gpu.tessera.io")["spec"]


def test_the_extender_reads_the_label_that_places_the_driver(rendered):
    driver = find(rendered["default"], "DaemonSet", "tessera-dra-plugin")
    assert driver["spec"]["template"]["spec"]["nodeSelector"] == {LABEL_DRA_DRIVER: "true"}


def test_the_extender_still_sees_nvidia_gpu_pods(rendered):
    """kube-scheduler sends the extender a pod asking nvidia.com/gpu whichever path serves it: the
    extender's filter passes DRA nodes, and its bind writes no assignment there."""
    managed = {m["name"]: m for e in scheduler_configuration(rendered["default"])["extenders"]
               for m in e.get("managedResources", [])}
    assert managed["nvidia.com/gpu"]["ignoredByScheduler"] is False
