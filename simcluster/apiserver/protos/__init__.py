"""Generated protobuf code for the API server (``python -m simcluster.apiserver.protos.generate``)."""
