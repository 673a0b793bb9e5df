"""The scheduler loop says why a pod waits as kube-scheduler does: one FailedScheduling message that
counts the nodes per reason the extender gave."""

from __future__ import annotations

from simcluster.simscheduler import unschedulable_message


def test_message_counts_nodes_per_reason_like_kube_scheduler():
    result = {"NodeNames": [], "FailedNodes": {"a100-whole": "node(s) didn't have 6 GPUs free"},
              "FailedAndUnresolvableNodes": {"h100-mig": "node(s) had no GPU in exclusive mode",
                                             "a100-mps": "node(s) had no GPU in exclusive mode",
                                             "t4": "node(s) had no GPU in exclusive mode"}}
    assert unschedulable_message(result, 4) == ("0/4 nodes are available: 3 node(s) had no GPU in exclusive mode, "
                                                "1 node(s) didn't have 6 GPUs free.")


def test_a_reason_without_the_node_prefix_is_still_counted():
    assert unschedulable_message({"FailedNodes": {"n1": "cache not synced"}}, 1) == \
        "0/1 nodes are available: 1 node(s): cache not synced."


def test_ties_at_the_top_score_are_broken_at_random_like_kube_scheduler():
    import random

    from simcluster.simscheduler import select_host

    scores = [{"Host": "a", "Score": 10}, {"Host": "b", "Score": 10}, {"Host": "c", "Score": 9}]
    rng = random.Random(1)
    chosen = {select_host(scores, rng) for _ in range(50)}
    assert chosen == {"a", "b"}                 # both top nodes, never the lower one
    assert select_host([{"Host": "only", "Score": 0}], rng) == "only"
