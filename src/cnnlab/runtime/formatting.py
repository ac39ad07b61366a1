"""Numbers as people read them, one formatter per kind of number, used by every table and plot."""

from __future__ import annotations

SI_PREFIXES = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))


def format_si(value: float) -> str:
    """1549312 -> "1.55 M": a count with an SI prefix and two decimals (FLOPs, parameters)."""
    for unit, scale in SI_PREFIXES:
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:g} "


def format_tick(value: float) -> str:
    """20000 -> "20k", 3000000 -> "3M": a short axis label for a count."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def format_grouped(value: float) -> str:
    """1234 -> "1,234", 1234.56 -> "1,234.6": thousands grouped, one decimal unless whole."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def format_duration(seconds: float) -> str:
    """3.21 -> "3.2 s", 42 -> "42 s", 300 -> "5.0 min": a duration to the precision that matters."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def shorten(text: str, limit: int = 28) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for legends and narrow columns."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
