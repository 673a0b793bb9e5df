"""Generated code for the kubelet pod-resources API v1 (proto/podresources/v1/api.proto)."""
