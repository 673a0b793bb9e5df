"""``tessera-dra-plugin``: Tessera's Dynamic Resource Allocation (DRA) driver, ``gpu.tessera.io``.

Beside the device plugin, for the GPUs the config gives it (``draplugin.gpus``): it publishes them as
ResourceSlices (:mod:`draplugin.slices`), registers with the kubelet's plugin watcher
(:mod:`draplugin.registration`) and prepares the devices kube-scheduler allocated to a ResourceClaim
(:mod:`draplugin.prepare`): a CDI spec per claim (:mod:`draplugin.cdi`) that gives the container its
device nodes, its NVIDIA variables and the signed grant the OCI hook verifies, recorded in a checkpoint
(:mod:`draplugin.checkpoint`) so that a restart loses nothing.
"""
