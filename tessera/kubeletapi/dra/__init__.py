"""Generated code for the kubelet's DRA kubelet-plugin API (see proto/dra/)."""
