"""Generated code for the kubelet's DRA kubelet-plugin API v1 (proto/dra/v1/api.proto)."""
