"""The CSV parser's fast path gives the same predictions as the row-by-row check it skips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.quest.scoring import SubmissionError, parse_submission


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 300),
    classes=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    crlf=st.booleans(),
    spaces=st.booleans(),
    trailing=st.booleans(),
)
def test_any_valid_file_parses_to_its_predictions(count, classes, seed, crlf, spaces, trailing):
    rng = np.random.default_rng(seed)
    ids, labels = rng.permutation(count), rng.integers(0, classes, count)
    gap = " " if spaces else ""
    newline = "\r\n" if crlf else "\n"
    rows = [f"{i}{gap},{gap}{label}" for i, label in zip(ids, labels, strict=True)]
    text = "id,label" + newline + newline.join(rows) + (newline if trailing else "")
    expected = np.empty(count, dtype=np.int64)
    expected[ids] = labels
    parsed = parse_submission(text.encode(), test_count=count, num_classes=classes)
    np.testing.assert_array_equal(parsed, expected)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("0,1\n1,1\n1,2\n", "line 4: id 1 appears twice (first on line 3)"),
        ("0,1\n1,1\n3,2\n", "line 4: id 3 is out of range; ids are 0..2"),
        ("0,1\n1,1\n2,10\n", "line 4: id 2 has label 10; labels are 0..9"),
        ("0,1\n1,+1\n2,1\n", "line 3: label must be an integer. Received: '+1'"),
        ("0,1\n1,1\n", "1 of 3 ids are missing (first: 2); every test id must appear exactly once"),
    ],
)
def test_invalid_files_still_name_the_line(body, message):
    with pytest.raises(SubmissionError) as error:
        parse_submission(f"id,label\n{body}".encode(), test_count=3, num_classes=10)
    assert str(error.value) == message
