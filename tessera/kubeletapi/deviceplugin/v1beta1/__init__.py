"""Generated code for the kubelet device-plugin API v1beta1 (proto/deviceplugin/v1beta1/api.proto)."""
