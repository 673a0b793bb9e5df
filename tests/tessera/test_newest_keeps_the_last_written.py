"""``tessera.newest.Newest``: the bounded map behind the extender's remembered pods keeps the entries
written last; reading one does not keep it longer, writing it again does."""

from __future__ import annotations

from tessera.newest import Newest


def test_the_oldest_written_goes_first_and_a_read_keeps_nothing():
    kept: Newest[str, int] = Newest(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1                     # read: "a" is still the oldest
    kept.put("c", 3)
    assert ("a" in kept, kept.get("b"), kept.get("c"), len(kept)) == (False, 2, 3, 2)
    kept.put("b", 20)                             # written again: now the newest
    kept.put("d", 4)
    assert kept.values() == [20, 4]
    assert kept.pop("b") == 20 and kept.pop("b", -1) == -1 and kept.values() == [4]
