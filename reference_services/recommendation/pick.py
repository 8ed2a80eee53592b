"""Choosing recommendations."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

MAX_RECOMMENDATIONS = 5


def recommend(
    catalog_ids: Sequence[str], exclude: Iterable[str], k: int = MAX_RECOMMENDATIONS
) -> list[str]:
    """Up to ``k`` distinct random ids from ``catalog_ids``, none of them in ``exclude``."""
    excluded = set(exclude)
    candidates = list(dict.fromkeys(i for i in catalog_ids if i not in excluded))
    return random.sample(candidates, min(k, len(candidates)))
