"""What teams type: team names, model descriptions and training times, checked one way everywhere.

A team name is shown on the board, the page and the organiser's terminal, so it must be text a
person can read and tell apart from every other name:

- no control, format (zero-width, bidirectional overrides), surrogate, private-use or unassigned
  characters, no line or paragraph separators, no invisible fillers, no more than
  ``MAX_COMBINING_MARKS`` accents on one letter; at least one letter or digit; at most
  ``MAX_NAME_LENGTH`` characters;
- unique after Unicode NFKC normalisation and case folding (``name_key``): "Team7", "team7" and
  the fullwidth "ｔｅａｍ７" are one name;
- not a look-alike of another name (``skeleton``): "tеam7" with a Cyrillic "е", "team7" with a
  Greek "Τ", "teamO" for "team0".

Why our own skeleton and not a library: Unicode's full confusables list (UTS #39, ~6,000 entries)
is on PyPI only in small, rarely released packages; the names in a class are typed on ordinary
keyboards, and the attack is a handful of Cyrillic, Greek and fullwidth letters that render like
Latin ones. NFKC already folds the fullwidth and mathematical forms; ``_LOOK_ALIKES`` maps the
Cyrillic and Greek letters (both cases) and the digit/letter pairs 0/O and 1/l/I that UTS #39
also treats as confusable.

Model descriptions and code links (free text of up to 500 characters) may hold any printable
text; control characters (ESC, NUL, newlines) are refused, since they reached the organiser's
terminal through ``quest leaderboard`` and ``/api/log``. ``printable`` escapes them in what is
already stored.
"""

from __future__ import annotations

import math
import unicodedata

MAX_NAME_LENGTH = 100  # the database column's size
MAX_COMBINING_MARKS = 3  # accents stacked on one letter ("Zalgo" text spills over other rows)
MAX_TRAIN_TIME_S = 366 * 24 * 3600  # a year: more is a typo or an attempt to break the board

# Control (Cc), format (Cf: zero-width spaces and joiners, bidirectional overrides), surrogates,
# private use, unassigned code points, line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Letters and symbols that render as nothing: Hangul fillers, the braille blank, the
# combining grapheme joiner.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")

# Letters drawn like Latin ones. Applied before and after case folding, so that an uppercase
# Greek "Η" (folded to "η", which looks like "n") still meets the Latin "H".
_LOOK_ALIKES = str.maketrans(
    {
        # Cyrillic capitals and small letters
        # (a capital I-like letter becomes "l", as the Latin "I" does: the pair that fonts confuse)
        **dict(zip("АВЕКМНОРСТХУЅІЈҮҺԚԜӀ", "ABEKMHOPCTXYSlJYHQWl", strict=True)),
        **dict(zip("аеорсухѕіјһԁԛԝӏ", "aeopcyxsijhdqwl", strict=True)),
        # Greek capitals and small letters
        **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHlKMNOPTYX", strict=True)),
        **dict(zip("αοριυνκχϲϳ", "aopiuvkxcj", strict=True)),
        # Latin letters without their dot or with another shape, and digits that pass for letters
        **dict(zip("ıȷɡɑɩ", "ijgai", strict=True)),
        **dict(zip("01I|", "olll", strict=True)),
    }
)


def is_unsafe(character: str) -> bool:
    """A character that must not reach a terminal or a page."""
    return character in _INVISIBLE or unicodedata.category(character) in _UNSAFE_CATEGORIES


def unsafe_characters(text: str) -> list[str]:
    """The unsafe characters of ``text``, in order."""
    return [c for c in text if is_unsafe(c)]


def describe_character(character: str) -> str:
    """``U+001B`` with its Unicode name where it has one: ``U+200B ZERO WIDTH SPACE``."""
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X}" + (f" {name}" if name else "")


def printable(text: str) -> str:
    """``text`` with every unsafe character shown as an escape (``\\x1b``, ``\\u200b``)."""
    return "".join(_escape(c) if is_unsafe(c) else c for c in text)


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def check_text(name: str, text: str) -> None:
    """Free text (a model description, a code link) holds no control or invisible character."""
    bad = unsafe_characters(text)
    if bad:
        raise ValueError(
            f"{name} contains {describe_character(bad[0])} at position {text.index(bad[0]) + 1}: "
            f"expected printable text without control characters. Received: {name}={text!r}"
        )


def check_team_name(name: str) -> str:
    """The name to store (stripped, NFC) if a person can read it; ``ValueError`` otherwise."""
    shown = unicodedata.normalize("NFC", name.strip())
    received = f"Received: name={name!r}"
    if not shown or len(shown) > MAX_NAME_LENGTH:
        raise ValueError(f"team name must have 1 to {MAX_NAME_LENGTH} characters. {received}")
    bad = unsafe_characters(shown)
    if bad:
        raise ValueError(
            f"team name contains {describe_character(bad[0])}: expected visible text without "
            f"control, zero-width or line-break characters. {received}"
        )
    if any(c.isspace() and c != " " for c in shown):
        raise ValueError(f"team name may separate words with spaces only, not tabs. {received}")
    if not any(unicodedata.category(c)[0] in "LN" for c in shown):
        raise ValueError(f"team name needs at least one letter or digit. {received}")
    if _longest_mark_run(unicodedata.normalize("NFD", shown)) > MAX_COMBINING_MARKS:
        raise ValueError(
            f"team name stacks more than {MAX_COMBINING_MARKS} accents on one letter. {received}"
        )
    return shown


def _longest_mark_run(text: str) -> int:
    longest = run = 0
    for character in text:
        run = run + 1 if unicodedata.combining(character) else 0
        longest = max(longest, run)
    return longest


def name_key(name: str) -> str:
    """What makes two names the same name: NFKC, case folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def skeleton(name: str) -> str:
    """What a name looks like: look-alike letters replaced by the Latin letter they pass for."""
    text = unicodedata.normalize("NFKC", name).translate(_LOOK_ALIKES)
    return " ".join(text.casefold().translate(_LOOK_ALIKES).split())


def clashing_name(name: str, existing: list[str]) -> str | None:
    """The first of ``existing`` that ``name`` would be confused with, or None."""
    key, look = name_key(name), skeleton(name)
    for other in existing:
        if name_key(other) == key or skeleton(other) == look:
            return other
    return None


def check_distinct_name(name: str, existing: list[str]) -> None:
    """Refuse a name that is another team's once case and width are ignored, or looks like it."""
    clash = clashing_name(name, existing)
    if clash is None:
        return
    if name_key(clash) == name_key(name):
        raise ValueError(
            f"a team named {clash!r} already exists (names are compared ignoring case and "
            f"width). Received: name={name!r}"
        )
    raise ValueError(
        f"team name {_spelled(name)} is too close to the existing team {_spelled(clash)}: names "
        "are compared ignoring case, width and look-alike letters; expected a name that reads "
        f"differently. Received: name={name!r}"
    )


def _spelled(name: str) -> str:
    """The name, and its code points when it is not plain ASCII: 'tеam7' ('t\\u0435am7')."""
    return repr(name) if name.isascii() else f"{name!r} ({name!a})"


def check_train_time(value: float, name: str = "train_time") -> float:
    """Seconds of training: a finite number from 0 to a year."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= MAX_TRAIN_TIME_S
    ):
        raise ValueError(
            f"{name} must be a number of seconds from 0 to {MAX_TRAIN_TIME_S:,} (a year). "
            f"Received: {name}={value!r}"
        )
    return float(value)
