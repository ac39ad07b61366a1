"""The search quest: a class leaderboard with server-side scoring (the lecture's "Search Quest").

Modules (import them directly; this package imports nothing heavy, so cnnlab runs without the
server's dependencies):

- ``cnnlab.quest.db``: the database (SQLite or PostgreSQL): ``init_competition``, ``add_team``,
  ``reveal``.
- ``cnnlab.quest.tokens``: team and organiser tokens (salted HMAC-SHA256, constant-time check).
- ``cnnlab.quest.scoring``: checking a submitted ``id,label`` CSV and scoring it (NumPy only).
- ``cnnlab.quest.board``: recording submissions under the daily limit; leaderboard, history, log.
- ``cnnlab.quest.page``: the HTML page with its inline SVG histogram.
- ``cnnlab.quest.server``: ``create_app(db_url)``, the FastAPI app.
- ``cnnlab.quest.client``: ``submit``, ``submit_model`` and ``leaderboard`` over HTTP (httpx).
- ``cnnlab.quest.secret``: the test set a quest scores on (a folder's, or public images perturbed
  under a secret seed), the quest's settings, ``export_test_images``.
- ``cnnlab.quest.models``: model submissions: ``ModelLimits``, ``run_model`` (ONNX Runtime in a
  separate, capped process: ``model_worker``); ``model_routes``: ``POST /api/models``.
- ``cnnlab.quest.fields``: team names (distinct ignoring case, width and look-alikes), text
  without control characters, training times.
- ``cnnlab.quest.teams``: ``list_teams``, ``remove_team``, ``rotate_token``.
- ``cnnlab.quest.sqlite_files``: the database built aside and private (0600).
- ``cnnlab.quest.http_limits``: deadlines and a connection limit for the server.
"""
