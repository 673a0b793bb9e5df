"""Generated code for the kubelet's deviceplugin API (see proto/deviceplugin/)."""
