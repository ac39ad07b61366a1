"""Suggestions for a mistyped name (a model, a dataset): "Did you mean ...?"."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The candidates nearest to ``name``: the same ignoring case and dashes, then those
    starting with it, then those containing it, then difflib's nearest."""

    def key(text: str) -> str:
        return str(text).lower().replace("-", "").replace("_", "")

    query, names = key(name), sorted(candidates)
    ranked = [n for n in names if key(n) == query]
    ranked += [n for n in names if query and key(n).startswith(query)]
    ranked += [n for n in names if query and query in key(n)]
    keys = {key(n): n for n in names}
    ranked += [keys[k] for k in difflib.get_close_matches(query, list(keys), n=limit, cutoff=0.5)]
    return list(dict.fromkeys(ranked))[:limit]
