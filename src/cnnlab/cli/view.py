"""`cnnlab view`: serve the local page that opens a trained network, layer by layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import err, out, user_errors
from cnnlab.runtime.threads import torch_threads
from cnnlab.runtime.validate import check_int, check_number

FLAGS = {
    "port": "--port",
    "host": "--host",
    "data_dir": "--data-dir",
    "data": "--data",
    "max_upload_mb": "--max-upload-mb",
    "threads": "--threads",
}


@user_errors(flags=FLAGS)
def view_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A run folder, its checkpoint.pt, an export folder, or a zoo model name "
            "(its initial weights).",
            metavar="RUN_DIR|EXPORT_DIR|MODEL",
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(help="Dataset of the test images to pick from; default: the training data."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="A folder that holds the dataset's files.")
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port, 1..65535.")] = 8765,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; 127.0.0.1 serves this machine only."),
    ] = "127.0.0.1",
    max_upload_mb: Annotated[
        float, typer.Option(help="Uploads larger than this many MiB are refused.")
    ] = 5.0,
    threads: Annotated[
        int, typer.Option(help="Torch threads for the model (one image at a time).")
    ] = 1,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print where the page is as JSON, then serve.")
    ] = False,
) -> None:
    """Serve a local page over a trained model: draw, upload or pick an image; top-5 bars; every
    layer's feature maps; click a cell for its exact arithmetic; the lecture's slide examples."""
    check_int("port", port, low=1, high=65535)
    check_number(
        "max_upload_mb",
        max_upload_mb,
        0.0,
        1024.0,
        "a size in MiB, above 0 and below 1024",
        open_low=True,
    )
    check_int("threads", threads, low=1, high=64)
    from cnnlab.view import server
    from cnnlab.view.session import open_view

    server.check_host(host)
    sock = server.bind(host, port)  # before loading the model: a busy port fails at once
    try:
        session = open_view(source, data=data, data_dir=data_dir)
        app = server.create_app(session, max_upload_bytes=int(max_upload_mb * 2**20))
        url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}/"
        notes = [n for n in (session.data_note, session.layers_note) if n]
        if json_output:  # one line, at once: a script reads it while the page is served
            started = {"url": url, "model": session.predictor.model_name, "source": source}
            print(json.dumps(started | {"kind": session.kind, "notes": notes}), flush=True)
        else:
            out.print(f"cnnlab view: {session!r}", markup=False)
            for note in notes:
                out.print(f"note: {note}", markup=False)
            out.print(f"open {url} (Ctrl-C stops)", markup=False)
        if not server.is_loopback(host):
            err.print(
                f"warning: listening on {host}: anyone who can reach this machine can use the page",
                markup=False,
            )
        with torch_threads(threads):
            server.serve(app, sock)
    finally:
        sock.close()
