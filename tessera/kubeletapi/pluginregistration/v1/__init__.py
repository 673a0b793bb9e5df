"""Generated code for the kubelet's plugin registration API v1 (proto/pluginregistration/v1/api.proto)."""
