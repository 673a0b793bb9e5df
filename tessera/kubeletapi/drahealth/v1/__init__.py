"""Generated code for the kubelet's DRA resource-health API v1 (proto/drahealth/v1/api.proto)."""
