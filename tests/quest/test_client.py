"""The Python client against a real server (uvicorn in a thread)."""

import pytest

from cnnlab.quest import client
from cnnlab.quest.server import create_app


@pytest.fixture
def server(quest, kit):
    with kit.uvicorn_thread(create_app(quest.db_url)) as url:
        yield url


def test_submit_then_leaderboard(quest, server, tmp_path, kit):
    token = quest.team("clients")
    csv = tmp_path / "predictions.csv"
    csv.write_text(quest.probe_csv())
    answer = client.submit(server, token, csv, model="ResNet-18", train_time=12.3, code="abc123")
    assert answer["public_score"] == 1.0
    assert answer["submissions_left"] == 4
    [entry] = client.leaderboard(server + "/")
    assert (entry["team"], entry["model"], entry["train_time"], entry["code"]) == (
        "clients", "ResNet-18", 12.3, "abc123",
    )  # fmt: skip
    assert [row["id"] for row in client.history(server, token)["submissions"]] == [answer["id"]]


def test_server_errors_become_one_line(quest, server, tmp_path):
    token = quest.team("typo")
    csv = tmp_path / "predictions.csv"
    csv.write_text("id,label\n0,1\n0,1\n")
    with pytest.raises(client.QuestServerError, match=r"^422 from .*: file: line 3: id 0") as error:
        client.submit(server, token, csv, model="m", train_time=1)
    assert "\n" not in str(error.value)
    with pytest.raises(client.QuestServerError, match=r"401 .*invalid token"):
        client.submit(server, "wrong.token", csv, model="m", train_time=1)


def test_local_mistakes_are_caught_before_sending(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such predictions file"):
        client.submit("http://127.0.0.1:9", "t", tmp_path / "nope.csv", model="m", train_time=1)
    with pytest.raises(ValueError, match=r"^server expects a URL .* server='localhost:8000'$"):
        client.leaderboard("localhost:8000")


def test_an_unreachable_server_is_one_line():
    with pytest.raises(client.QuestServerError, match=r"cannot reach http://127\.0\.0\.1:9"):
        client.leaderboard("http://127.0.0.1:9")
