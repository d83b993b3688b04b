"""sranet.runtime.prefetch.read_ahead: order, state carried between reads, items that are None."""

from sranet.runtime.prefetch import read_ahead


def test_read_ahead_keeps_order_state_and_items_that_are_none():
    seen = []

    def read(item):
        seen.append(item)  # one thread, in input order: state carried from item to item holds
        return len(seen)

    items = [None, "a", None, "b"]
    for depth in (0, 1, 3):
        seen.clear()
        assert list(read_ahead(read, items, depth)) == [(None, 1), ("a", 2), (None, 3), ("b", 4)]
