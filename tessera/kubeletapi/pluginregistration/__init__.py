"""Generated code for the kubelet's plugin registration API (see proto/pluginregistration/)."""
