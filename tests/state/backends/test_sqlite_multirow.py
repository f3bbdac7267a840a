"""The chunking of multi-row statements (``sqlite/multirow.py``): pure functions, as a table."""

from __future__ import annotations

import pytest

from motia.state.backends.sqlite import multirow


@pytest.mark.parametrize(
    ("count", "most", "expected"),
    [
        (0, 128, []),
        (1, 128, [(0, 1)]),
        (7, 128, [(0, 4), (4, 2), (6, 1)]),
        (128, 128, [(0, 128)]),
        (200, 128, [(0, 128), (128, 64), (192, 8)]),
        (31, 32, [(0, 16), (16, 8), (24, 4), (28, 2), (30, 1)]),
        (70, 32, [(0, 32), (32, 32), (64, 4), (68, 2)]),
    ],
)
def test_chunks_are_the_largest_powers_of_two_left_in_row_order(
    count: int, most: int, expected: list[tuple[int, int]]
) -> None:
    assert list(multirow.chunks(count, most)) == expected


@pytest.mark.parametrize(
    ("most", "expected"), [(1, [1]), (32, [1, 2, 4, 8, 16, 32]), (128, [1, 2, 4, 8, 16, 32, 64, 128])]
)
def test_sizes_are_every_chunk_a_kind_can_need(most: int, expected: list[int]) -> None:
    assert multirow.sizes(most) == expected
    assert {size for _, size in multirow.chunks(1000, most)} <= set(expected)
