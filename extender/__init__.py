"""The Tessera scheduler extender and admission webhook: places pods on nodes and GPUs, writes the ledger."""
