"""`cnnlab view` on the command line: bad flags are one line and exit 2; a real server answers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from cnnlab.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "--port must be an integer from 1 to 65535. Received: --port=0"),
        (["--port", "65536"], "--port must be an integer from 1 to 65535. Received: --port=65536"),
        (["--host", "my laptop"], "--host must be an IP address such as 127.0.0.1"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be a size in MiB, above 0"),
        (["--threads", "0"], "--threads must be an integer from 1 to 64. Received: --threads=0"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag_and_exit_2(args, message):
    result = runner.invoke(app, ["view", "lenet-like", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_model_is_refused_with_a_suggestion():
    result = runner.invoke(app, ["view", "lenet-lik", "--port", "1", "--json"])
    assert result.exit_code == 2
    assert "lenet-like" in json.loads(result.stdout)["error"]


def test_a_port_in_use_is_refused_before_the_model_loads():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["view", "nosuch-model", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in result.stderr
    assert f"Received: --port={port}" in result.stderr


@pytest.mark.slow
def test_cnnlab_view_serves_a_run_on_127_0_0_1(digits_run):
    with socket.socket() as probe:  # a free port, released for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "view",
        str(digits_run),
        "--port",
        str(port),
        "--json",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = json.loads(server.stdout.readline())
        assert started["url"] == f"http://127.0.0.1:{port}/" and started["kind"] == "run"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(started["url"], timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        assert page.status_code == 200 and "cnnlab view" in page.text
        info = httpx.get(f"{started['url']}api/model", timeout=5).json()
        assert info["model"] == "lenet-like" and info["source"] == str(digits_run)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert server.returncode == 130  # Ctrl-C stops the page, as it stops every command
    assert server.stderr.read().strip().endswith("interrupted (Ctrl-C)")
