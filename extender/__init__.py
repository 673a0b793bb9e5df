"""The Tessera scheduler extender and admission webhook: places pods on nodes and GPUs, writes the ledger.

Two rooms: ``extender.placement`` is the placement model (pure: what fits where, scores, GPU choice;
its public names are listed there), and the rest of this package is the server around it (HTTP verbs
and their JSON, the cluster cache fed by the watches, leader election, the webhook, the daemon;
``python -m extender.main`` runs it). Public names of the server: :class:`ExtenderDaemon` (the extender
in this process), :class:`ExtenderVerbs` (filter, prioritize, bind, preempt on a cache),
:class:`ClusterCache` (what the extender knows of the cluster) and :class:`PodAdmission` (the webhook).
"""

from tessera.exports import public_names

__getattr__, __all__ = public_names(__name__, {
    "ExtenderDaemon": "extender.daemon", "ExtenderVerbs": "extender.verbs", "ClusterCache": "extender.cache",
    "PodAdmission": "extender.webhook",
})
