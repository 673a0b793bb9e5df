"""The Tessera scheduler extender and admission webhook: places pods on nodes and GPUs, writes the ledger.

Two rooms: ``extender.placement`` is the placement model (pure: what fits where, scores, GPU choice;
its public names are listed there), and the rest of this package is the server around it (HTTP verbs
and their JSON, the cluster cache fed by the watches, leader election, the webhook, the daemon;
``python -m extender.main`` runs it). Nothing is re-exported here: import from the room you mean.
"""

__all__: list[str] = []
