"""The selector grammar and the strategic-merge rules, checked without HTTP."""

from __future__ import annotations

import pytest

from simcluster.apiserver import ApiError
from simcluster.apiserver.patch import merge_patch, strategic_merge_patch
from simcluster.apiserver.selectors import parse_fields, parse_labels


@pytest.mark.parametrize("selector, labels, expected", [
    ("a=1", {"a": "1"}, True),
    ("a==1", {"a": "2"}, False),
    ("a!=1", {}, True),
    ("a in (1, 2),b", {"a": "2", "b": ""}, True),
    ("a notin (1,2)", {"a": "3"}, True),
    ("a notin (1,2)", {"a": "1"}, False),
    ("!a", {"b": "1"}, True),
    ("tessera.io/gpu-mode=mps", {"tessera.io/gpu-mode": "mps"}, True),
    ("n>3", {"n": "4"}, True),
    ("n<3", {"n": "4"}, False),
    ("", {"x": "y"}, True),
])
def test_label_selector_matches(selector, labels, expected):
    assert parse_labels(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["a in (b", "a===b", "=x", "a=b c", "a in ()", "-bad-=x", "a=" + "x" * 64, "n>abc"])
def test_label_selector_refuses(bad):
    with pytest.raises(ApiError) as err:
        parse_labels(bad)
    assert err.value.code == 400


def test_field_selector_escapes_and_empty_values():
    sel = parse_fields(r"metadata.name=a\,b,spec.nodeName=")
    assert sel.matches({"metadata": {"name": "a,b"}, "spec": {}})
    assert not sel.matches({"metadata": {"name": "a,b"}, "spec": {"nodeName": "n1"}})


def test_merge_patch_null_deletes():
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"c": 2}}


def test_strategic_patch_directives():
    pod = {"spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                                   {"name": "b", "image": "1"}],
                    "tolerations": [{"key": "k"}]},
           "metadata": {"finalizers": ["f1"]}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]},
                                     {"name": "b", "$patch": "delete"}],
                      "$setElementOrder/containers": [{"name": "a"}],
                      "tolerations": [{"key": "other"}]},
             "metadata": {"finalizers": ["f2"], "$deleteFromPrimitiveList/finalizers": ["f1"]}}
    out = strategic_merge_patch(pod, patch, "Pod")
    assert out["spec"]["containers"] == [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"},
                                                                             {"name": "Y", "value": "2"}]}]
    assert out["spec"]["tolerations"] == [{"key": "other"}]  # no merge key: replaced
    assert out["metadata"]["finalizers"] == ["f2"]
    assert pod["spec"]["containers"][1]["name"] == "b"  # input untouched


def test_strategic_patch_replace_directive_on_map():
    out = strategic_merge_patch({"metadata": {"labels": {"a": "1", "b": "2"}}},
                                {"metadata": {"labels": {"$patch": "replace", "c": "3"}}}, "Pod")
    assert out["metadata"]["labels"] == {"c": "3"}
