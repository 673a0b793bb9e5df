"""Generated code for the kubelet's DRA resource-health API (see proto/drahealth/)."""
