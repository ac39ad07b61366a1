"""The quest server's routes through FastAPI's TestClient: scoring, validation, limits, secrecy,
authentication and escaping. Runs on SQLite, and on PostgreSQL when configured (see conftest)."""

from datetime import datetime, timedelta, timezone

import anyio
import pytest
from fastapi.testclient import TestClient

from cnnlab.quest.db import add_team, init_competition, reveal
from cnnlab.quest.server import create_app

HOSTILE_TEXTS = [
    "Robert'); DROP TABLE quest_teams;--",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
]


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock(datetime(2025, 11, 26, 10, 1, tzinfo=timezone.utc))


@pytest.fixture
def client(quest, clock):
    # No board caching across processes here: tests reveal through the database directly.
    with TestClient(create_app(quest.db_url, clock=clock, board_refresh_seconds=0)) as client:
        yield client


def every_public_view(client, tokens) -> dict[str, str]:
    """The text of every GET route a browser or a team can read."""
    views = {route: client.get(route).text for route in ("/", "/api/leaderboard", "/api/log")}
    views["/api/competition"] = client.get("/api/competition").text
    for name, token in tokens.items():
        views[f"history of {name}"] = client.get(
            "/api/submissions", headers={"Authorization": f"Bearer {token}"}
        ).text
    return views


def test_submission_is_scored_and_listed(quest, client, kit):
    token = quest.team("team7")
    answer = client.post("/api/submissions", **kit.submission(token, quest.probe_csv()))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {"id", "team", "public_score", "submissions_left", "created_at"}
    assert body["public_score"] == 1.0
    assert body["submissions_left"] == 4
    [entry] = client.get("/api/leaderboard").json()
    assert (entry["rank"], entry["team"], entry["score"]) == (1, "team7", 1.0)
    assert (entry["model"], entry["train_time"], entry["submissions"]) == ("LeNet-5", 12.5, 1)
    assert client.get("/api/log").text == (
        '26/11 10:01> "team7: dat=fashion-mnist, score=1.00000, model=LeNet-5"\n'
    )


def test_scores_are_accuracies_on_each_half(quest, client, kit):
    token = quest.team("half")
    csv = kit.to_csv(quest.predictions(public_correct=32, private_correct=64))
    assert client.post("/api/submissions", **kit.submission(token, csv)).json()[
        "public_score"
    ] == pytest.approx(32 / 128)
    reveal(quest.db_url)
    [entry] = client.get("/api/leaderboard").json()
    assert entry["private_score"] == pytest.approx(64 / 128)
    assert entry["score"] == entry["private_score"]


def test_private_score_never_leaves_before_the_reveal(quest, client, kit):
    tokens = {"a": quest.team("a"), "b": quest.team("b")}
    answer = client.post("/api/submissions", **kit.submission(tokens["a"], quest.probe_csv()))
    assert kit.secret not in answer.text
    bad = client.post("/api/submissions", **kit.submission(tokens["b"], "id,label\n0,99\n"))
    assert bad.status_code == 422
    for route, text in every_public_view(client, tokens).items():
        assert kit.secret not in text, route
        assert "private" not in text.lower(), route
    for hidden in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(hidden).status_code == 404

    reveal_answer = client.post(
        "/api/reveal", headers={"Authorization": f"Bearer {quest.organiser_token}"}
    )
    assert reveal_answer.status_code == 200
    after = every_public_view(client, tokens)
    for route in ("/", "/api/leaderboard", "/api/log", "history of a"):
        assert kit.secret in after[route], route
    assert client.get("/api/competition").json()["revealed"] is True


def test_close_time_reveals_and_closes(db_url, kit, clock):
    quest = kit.make_quest(db_url, close_at="2025-11-26T12:00Z", now=clock())
    token = quest.team("late")
    with TestClient(create_app(db_url, clock=clock)) as client:
        assert client.post(
            "/api/submissions", **kit.submission(token, quest.probe_csv())
        ).is_success
        assert kit.secret not in client.get("/api/leaderboard").text
        clock.now = datetime(2025, 11, 26, 12, 0, tzinfo=timezone.utc)
        assert kit.secret in client.get("/api/leaderboard").text
        late = client.post("/api/submissions", **kit.submission(token, quest.probe_csv()))
        assert late.status_code == 409
        assert "closed" in late.json()["detail"]


def test_daily_limit_counts_accepted_files_per_utc_day(quest, client, clock, kit):
    token = quest.team("eager")
    for _ in range(2):  # rejected files do not count
        assert (
            client.post("/api/submissions", **kit.submission(token, "id,label\n")).status_code
            == 422
        )
    lefts = [
        client.post("/api/submissions", **kit.submission(token, quest.probe_csv())).json()[
            "submissions_left"
        ]
        for _ in range(5)
    ]
    assert lefts == [4, 3, 2, 1, 0]
    refused = client.post("/api/submissions", **kit.submission(token, quest.probe_csv()))
    assert refused.status_code == 429
    assert "5 of 5" in refused.json()["detail"]
    clock.now += timedelta(hours=14)  # 00:01 UTC the next day
    again = client.post("/api/submissions", **kit.submission(token, quest.probe_csv()))
    assert again.status_code == 201
    history = client.get("/api/submissions", headers={"Authorization": f"Bearer {token}"}).json()
    assert len(history["submissions"]) == 6
    assert history["submissions_left"] == 4


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("", "the file is empty"),
        ("image,label\n0,1\n", "line 1: expected the header 'id,label'"),
        ("id,label\n0,1\n0,2\n", "line 3: id 0 appears twice (first on line 2)"),
        ("id,label\n0,1\n256,1\n", "line 3: id 256 is out of range; ids are 0..255"),
        ("id,label\n0,1\n-1,1\n", "line 3: id -1 is out of range"),
        ("id,label\n0,1\n1,10\n", "line 3: id 1 has label 10; labels are 0..9"),
        ("id,label\n0,1\n1,cat\n", "line 3: label must be an integer. Received: 'cat'"),
        ("id,label\n0,1\nx,1\n", "line 3: id must be an integer"),
        ("id,label\n0,1,2\n", "line 2: expected two values 'id,label'"),
        ("id,label\n0,1\n", "255 of 256 ids are missing (first: 1, 2, 3, 4, 5, ...)"),
        ("id,label\n" + "0,1\n" * 300, "the file has 300 rows; expected exactly 256"),
    ],
)
def test_bad_files_are_refused_with_the_line_and_recorded_nowhere(quest, client, kit, csv, message):
    token = quest.team("careless")
    answer = client.post("/api/submissions", **kit.submission(token, csv))
    assert answer.status_code == 422
    assert message in answer.json()["detail"]
    assert client.get("/api/leaderboard").json() == []


def test_a_full_file_in_any_order_with_crlf_and_bom_is_accepted(quest, client, kit):
    token = quest.team("windows")
    rows = [f"{i},{label}" for i, label in enumerate(quest.labels)][::-1]
    csv = "\ufeffid,label\r\n" + "\r\n".join(rows) + "\r\n"
    answer = client.post("/api/submissions", **kit.submission(token, csv))
    assert answer.status_code == 201
    assert answer.json()["public_score"] == 1.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": ""}, "model: missing"),
        ({"train_time": "fast"}, "train_time must be a number of seconds from 0 to a year"),
        ({"train_time": "-1"}, "train_time must be a number"),
        ({"train_time": "nan"}, "train_time must be a number"),
        ({"train_time": "1e308"}, "train_time must be a number of seconds from 0 to a year"),
        ({"train_time": "31622401"}, "train_time must be a number of seconds from 0 to a year"),
        ({"model": "m" * 501}, "model: at most 500 characters"),
        ({"model": "lenet\x1b[2J"}, "model contains U+001B at position 6"),
        ({"model": "lenet\nnext"}, "model contains U+000A at position 6"),
        ({"code": "https://x.org/\x00"}, "code contains U+0000 at position 15"),
    ],
)
def test_bad_form_fields_are_refused(quest, client, kit, fields, message):
    token = quest.team("form")
    answer = client.post("/api/submissions", **kit.submission(token, quest.probe_csv(), **fields))
    assert answer.status_code == 422
    assert message in answer.json()["detail"]


def test_a_missing_file_field_is_refused(quest, client):
    token = quest.team("nofile")
    answer = client.post(
        "/api/submissions",
        headers={"Authorization": f"Bearer {token}"},
        files={"other": ("x.csv", b"id,label\n")},
        data={"model": "m", "train_time": "1"},
    )
    assert answer.status_code == 422
    assert "file: missing" in answer.json()["detail"]


@pytest.mark.parametrize("route", ["/api/submissions", "/api/reveal"])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer ", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer abc.def"]
)
def test_missing_or_wrong_tokens_get_401(quest, client, route, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    assert client.post(route, headers=headers).status_code == 401
    if route == "/api/submissions":
        assert client.get(route, headers=headers).status_code == 401


def test_a_right_id_with_a_wrong_secret_gets_401(quest, client, kit):
    token = quest.team("victim")
    token_id, _, secret = token.partition(".")
    forged = f"{token_id}.{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    answer = client.post("/api/submissions", **kit.submission(forged, quest.probe_csv()))
    assert answer.status_code == 401
    assert client.get("/api/leaderboard").json() == []


def test_teams_see_and_submit_only_as_themselves(quest, client, kit):
    alice, bob = quest.team("alice"), quest.team("bob")
    client.post("/api/submissions", **kit.submission(alice, quest.probe_csv(), model="alice-net"))
    answer = client.post("/api/submissions", **kit.submission(bob, quest.probe_csv(), team="alice"))
    assert answer.json()["team"] == "bob"  # a form field cannot choose the team
    history = client.get("/api/submissions", headers={"Authorization": f"Bearer {bob}"}).json()
    assert history["team"] == "bob"
    assert [row["team"] for row in history["submissions"]] == ["bob"]
    assert "alice-net" not in str(history)


def test_organiser_routes_need_the_organiser_token(quest, client, kit):
    team = quest.team("ambitious")
    assert (
        client.post("/api/reveal", headers={"Authorization": f"Bearer {team}"}).status_code == 403
    )
    organiser = {"Authorization": f"Bearer {quest.organiser_token}"}
    assert (
        client.post("/api/submissions", **kit.submission(quest.organiser_token, "")).status_code
        == 403
    )
    assert client.get("/api/submissions", headers=organiser).status_code == 403
    assert client.post("/api/reveal", headers=organiser).json()["revealed"] is True


def test_hostile_names_and_models_are_stored_as_given_and_shown_escaped(quest, client, kit):
    for text in HOSTILE_TEXTS:
        token = quest.team(text)
        answer = client.post(
            "/api/submissions", **kit.submission(token, quest.probe_csv(), model=text, code=text)
        )
        assert answer.status_code == 201
    board = client.get("/api/leaderboard").json()
    assert sorted(entry["team"] for entry in board) == sorted(HOSTILE_TEXTS)
    assert all(entry["model"] == entry["team"] == entry["code"] for entry in board)
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for raw in ("<script>", "<img", "onerror=alert(1)>"):
        assert raw not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "Robert&#x27;); DROP TABLE quest_teams;--" in page.text
    assert "<script" not in page.text.lower()


def test_code_links_only_for_http_urls(quest, client, kit):
    for name, code in (("linked", "https://example.org/repo"), ("js", "javascript:alert(1)")):
        client.post(
            "/api/submissions", **kit.submission(quest.team(name), quest.probe_csv(), code=code)
        )
    page = client.get("/").text
    assert '<a href="https://example.org/repo"' in page
    assert 'href="javascript' not in page


def test_page_has_an_inline_svg_histogram_of_public_scores(quest, client, kit):
    for correct in (32, 64, 64, 96):
        csv = kit.to_csv(quest.predictions(public_correct=correct))
        client.post(
            "/api/submissions", **kit.submission(quest.team(f"t{correct}-{len(quest.tokens)}"), csv)
        )
    page = client.get("/").text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count("<rect") == 20
    assert "count (max 2)" in svg
    assert "src=" not in page and "<link" not in page  # nothing fetched from elsewhere


@pytest.fixture
def small_app(quest):
    """The server with a 1,000-byte upload limit (the probe's request is about 2,000 bytes)."""
    with TestClient(create_app(quest.db_url, max_upload_bytes=1000)) as client:
        yield client


def test_an_oversize_upload_with_content_length_gets_413(quest, small_app, kit):
    token = quest.team("big")
    answer = small_app.post("/api/submissions", **kit.submission(token, quest.probe_csv()))
    assert answer.status_code == 413
    assert "1,000 bytes" in answer.json()["detail"]
    assert small_app.get("/api/leaderboard").json() == []


def test_an_oversize_chunked_upload_gets_413(quest, small_app):
    token = quest.team("stream")

    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n\r\n'
        for _ in range(1000):
            yield b"0,1\n" * 250  # 1,000 bytes a chunk, a megabyte in all

    answer = small_app.post(
        "/api/submissions",
        content=body(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    assert answer.status_code == 413
    assert "content-length" not in answer.request.headers


def test_the_server_stops_reading_an_oversize_body(quest, kit):
    """At the ASGI level, where we see how much of the body the app asks for."""
    app = create_app(quest.db_url, max_upload_bytes=1000)
    token = quest.team("firehose")
    chunks_read, messages = 0, []

    async def receive():
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"0,1\n" * 250, "more_body": chunks_read < 1000}

    async def send(message):
        messages.append(message)

    headers = {
        "host": "testserver",
        "authorization": f"Bearer {token}",
        "content-type": "multipart/form-data; boundary=b",
        "transfer-encoding": "chunked",
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/submissions",
        "raw_path": b"/api/submissions",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    assert messages[0]["status"] == 413
    assert chunks_read <= 2  # 1,000 bytes a chunk: the second one crosses the limit


def test_init_refuses_a_second_competition_and_bad_labels(quest, tmp_path):
    with pytest.raises(ValueError, match="already holds a competition"):
        init_competition(quest.db_url, data_name="x", labels=[0, 1], num_classes=2)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(ValueError, match=r"labels must lie in 0..1. Received: values from 0 to 2"):
        init_competition(other, data_name="x", labels=[0, 2], num_classes=2)
    with pytest.raises(ValueError, match="close_at expects an ISO 8601 time"):
        init_competition(other, data_name="x", labels=[0, 1], num_classes=2, close_at="soon")


def test_team_names_are_unique_and_not_empty(quest):
    add_team(quest.db_url, "dup")
    with pytest.raises(ValueError, match="a team named 'dup' already exists"):
        add_team(quest.db_url, "dup")
    with pytest.raises(ValueError, match="team name must have 1 to 100 characters"):
        add_team(quest.db_url, "   ")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://", "not a url", "sqlite:///:memory:"])
def test_unsupported_database_urls_are_refused(url):
    with pytest.raises(ValueError, match=r"^db_url (expects|needs) .* Received: db_url="):
        create_app(url)  # the Python argument, not the command's --db


def test_an_uninitialised_database_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="cnnlab quest init"):
        create_app(f"sqlite:///{tmp_path / 'missing.db'}")


def test_the_cached_board_follows_other_processes(quest, client, kit, clock):
    # With board_refresh_seconds=0 the board's key is read on every request: a submission through
    # another server process and a reveal from the CLI show on the next read.
    assert client.get("/api/leaderboard").json() == []
    token = quest.team("elsewhere")
    csv = kit.to_csv(quest.predictions(public_correct=32, private_correct=64))
    with TestClient(create_app(quest.db_url, clock=clock)) as other:
        assert other.post("/api/submissions", **kit.submission(token, csv)).status_code == 201
    [entry] = client.get("/api/leaderboard").json()
    assert entry["team"] == "elsewhere"
    assert "private_score" not in entry
    reveal(quest.db_url)
    [entry] = client.get("/api/leaderboard").json()
    assert entry["private_score"] == pytest.approx(64 / 128)


def test_the_board_cache_is_bounded_by_its_refresh_time(quest, kit, clock):
    # Served from memory for board_refresh_seconds, except after this process's own changes.
    with TestClient(create_app(quest.db_url, clock=clock, board_refresh_seconds=3600)) as client:
        assert client.get("/api/leaderboard").json() == []
        token = quest.team("here")
        csv = kit.to_csv(quest.predictions(public_correct=32, private_correct=64))
        assert client.post("/api/submissions", **kit.submission(token, csv)).status_code == 201
        [entry] = client.get("/api/leaderboard").json()  # its own submission: at once
        assert entry["team"] == "here"
        reveal(quest.db_url)  # another process: not before the refresh time on SQLite
        if quest.db_url.startswith("postgresql"):  # whose notification arrives in milliseconds
            assert kit.wait_until(
                lambda: "private_score" in client.get("/api/leaderboard").json()[0], 30
            )
            return
        assert "private_score" not in client.get("/api/leaderboard").json()[0]
        answer = client.post(
            "/api/reveal", headers={"Authorization": f"Bearer {quest.organiser_token}"}
        )
        assert answer.status_code == 200
        assert client.get("/api/leaderboard").json()[0]["private_score"] == pytest.approx(0.5)


def test_board_refresh_must_not_be_negative(quest):
    with pytest.raises(ValueError, match=r"board_refresh_seconds must be >= 0. Received: -1"):
        create_app(quest.db_url, board_refresh_seconds=-1)
