"""A simulated kubelet: the device manager (device-plugin registration, allocation, checkpoint),
the pod-resources API, and the OCI ``config.json`` a runtime would get."""

from simcluster.kubelet.devicemanager import AdmissionError, DeviceManager
from simcluster.kubelet.plugins import is_extended_resource_name
from simcluster.kubelet.podresources import PodResourcesServer

__all__ = ["AdmissionError", "DeviceManager", "PodResourcesServer", "is_extended_resource_name"]
