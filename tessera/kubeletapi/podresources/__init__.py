"""Generated code for the kubelet's podresources API (see proto/podresources/)."""
