"""Per-destination concatenation references."""

from __future__ import annotations

import pytest

from gateway.segmenting import RefAllocator


def test_two_long_messages_to_one_number_get_different_references() -> None:
    alloc = RefAllocator(8)
    refs = [alloc.next("+4479") for _ in range(256)]
    assert len(set(refs)) == 256  # nothing repeats until all 256 have been used
    assert alloc.next("+4479") == refs[0]


def test_destinations_do_not_all_start_at_the_same_reference() -> None:
    alloc = RefAllocator(8)
    assert alloc.next("+1") != alloc.next("+2")


def test_sixteen_bit_references_wrap_at_65536() -> None:
    alloc = RefAllocator.from_state({"": 0, "+1": 0xFFFE}, 16)
    assert [alloc.next("+1") for _ in range(3)] == [0xFFFF, 0, 1]


def test_state_exports_and_imports_as_plain_ints() -> None:
    alloc = RefAllocator(8)
    for _ in range(5):
        alloc.next("+44")
    alloc.next("+33")
    state = alloc.export()
    assert all(isinstance(v, int) for v in state.values())
    again = RefAllocator.from_state(state, 8)
    assert again.next("+44") == alloc.next("+44")
    assert again.next("+99") == alloc.next("+99")


def test_least_recently_used_destinations_are_forgotten_beyond_the_limit() -> None:
    alloc = RefAllocator(8, max_destinations=2)
    for number in ("+1", "+2", "+3"):
        alloc.next(number)
    assert set(alloc.export()) == {"", "+2", "+3"}


def test_only_8_or_16_bits() -> None:
    with pytest.raises(ValueError, match="8 or 16"):
        RefAllocator(12)
