"""The Tessera device plugin: advertises GPUs, MIG instances, MPS shares and time-sliced replicas to the kubelet."""
