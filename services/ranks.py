"""Fractional ranks for ordered siblings: a move or insert never renumbers the others."""

from __future__ import annotations

from fractional_indexing import generate_key_between


def rank_between(before: str | None, after: str | None) -> str:
    """A rank strictly between two neighbours (None: open end)."""
    return generate_key_between(before, after)


def rank_after(last: str | None) -> str:
    return generate_key_between(last, None)


def sort_key(rank: str) -> bytes:
    # Ranks compare as bytes; database collations (e.g. en_US) would order "a0V" after "a0a".
    return rank.encode()


def sibling_key(rank: str, sibling_id: object) -> tuple[bytes, str]:
    """The order of siblings: by rank as bytes, ties (two concurrent moves into one gap) by
    id, so every reader agrees on one order."""
    return rank.encode(), str(sibling_id)
