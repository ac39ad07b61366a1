"""Team names people can trust, model texts that cannot reach a terminal, train times in range."""

import pytest

from cnnlab.quest.db import add_team, open_engine, teams_table
from cnnlab.quest.fields import (
    MAX_TRAIN_TIME_S,
    check_team_name,
    check_text,
    check_train_time,
    clashing_name,
    printable,
)

CYRILLIC_E = "\u0435"
GREEK_CAPITAL_TAU = "\u03a4"


@pytest.mark.parametrize(
    ("existing", "new"),
    [
        ("team7", f"t{CYRILLIC_E}am7"),  # the attack
        ("team7", "TEAM7"),  # case
        ("team7", "\uff54\uff45\uff41\uff4d\uff17"),  # fullwidth, folded by NFKC
        ("team7", f"{GREEK_CAPITAL_TAU}EAM7"),  # a Greek capital that looks Latin
        ("\u0440\u0430\u0441\u0435", "pace"),  # all Cyrillic "расе" against Latin
        ("Ivan", "lvan"),  # capital I and small l
        ("team0", "teamO"),  # zero and O
        ("crew 7", "crew  7"),  # spaces collapsed
        ("caf\u00e9", "cafe\u0301"),  # precomposed and combining accent: one name
    ],
)
def test_look_alikes_and_case_variants_clash(existing, new):
    assert clashing_name(new, ["other", existing]) == existing


@pytest.mark.parametrize(
    ("existing", "new"), [("team7", "team8"), ("ian", "lan"), ("crew", "crow"), ("cafe", "café")]
)
def test_names_that_read_differently_do_not_clash(existing, new):
    assert clashing_name(new, [existing]) is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("evil\x1b[2J", "contains U+001B"),  # ESC: clears the organiser's screen
        ("nul\x00", "contains U+0000"),
        ("zero\u200bwidth", "contains U+200B ZERO WIDTH SPACE"),
        ("\u202eevil", "contains U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("two\nlines", "contains U+000A"),
        ("tab\there", "contains U+0009"),
        ("line\u2028sep", "contains U+2028 LINE SEPARATOR"),
        ("\u3164", "contains U+3164 HANGUL FILLER"),  # looks blank
        ("   ", "must have 1 to 100 characters"),
        ("x" * 101, "must have 1 to 100 characters"),
        ("!!! ---", "needs at least one letter or digit"),
        ("x" + "\u0301" * 4, "stacks more than 3 accents"),
        ("\u017a" + "\u0301" * 3, "stacks more than 3 accents"),  # z-acute counts its own
    ],
)
def test_unreadable_names_are_refused_naming_the_character(name, message):
    with pytest.raises(ValueError, match=r"^team name") as error:
        check_team_name(name)
    assert message in str(error.value)
    assert f"Received: name={name!r}" in str(error.value)


def test_a_readable_name_is_kept_as_typed_but_stripped_and_composed():
    assert check_team_name("  Équipe 7 ") == "Équipe 7"
    assert check_team_name("cafe\u0301") == "caf\u00e9"  # NFC: the same text, one code point
    assert check_team_name("x" + "\u0301" * 3) == "x" + "\u0301" * 3


def test_printable_escapes_every_control_and_invisible_character():
    assert printable("a\x1b[31mb\x00\u200b\nc") == "a\\x1b[31mb\\x00\\u200b\\x0ac"
    assert printable("Équipe <7> ü") == "Équipe <7> ü"  # ordinary text untouched


@pytest.mark.parametrize("text", ["lenet\x1b[2J", "a\x00b", "x\ny", "bidi\u202e"])
def test_model_texts_with_control_characters_are_refused(text):
    with pytest.raises(ValueError, match=r"^model contains U\+[0-9A-F]{4}.* Received: model="):
        check_text("model", text)


@pytest.mark.parametrize("value", [1e308, -1.0, -0.5, float("nan"), float("inf"), True, "5"])
def test_train_times_out_of_range_are_refused(value):
    with pytest.raises(ValueError, match=r"^train_time must be a number of seconds from 0 to"):
        check_train_time(value)


def test_train_times_in_range_are_kept():
    assert check_train_time(0) == 0.0
    assert check_train_time(28.7) == 28.7
    assert check_train_time(MAX_TRAIN_TIME_S) == 366 * 24 * 3600  # hand-computed: 31,622,400


def test_the_database_refuses_a_look_alike_team_and_keeps_one(quest):
    add_team(quest.db_url, "team7")
    with pytest.raises(ValueError, match=r"too close to the existing team 'team7'") as error:
        add_team(quest.db_url, f"t{CYRILLIC_E}am7")
    assert "t\\u0435am7" in str(error.value)  # the code point that differs is shown
    with pytest.raises(ValueError, match=r"^a team named 'team7' already exists"):
        add_team(quest.db_url, "Team7")
    with pytest.raises(ValueError, match=r"contains U\+001B"):
        add_team(quest.db_url, "x\x1b")
    with open_engine(quest.db_url) as engine, engine.connect() as connection:
        names = list(connection.execute(teams_table.select()).mappings())
    assert [row["name"] for row in names] == ["team7"]
