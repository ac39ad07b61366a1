"""`cnnlab quest export-test`: a CSV quest's test images for the teams, without labels.

A model quest's images are secret and stay on the server; its teams submit exported models
(`cnnlab quest submit --model EXPORT_DIR`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.common import out, output_errors, print_json, user_errors
from cnnlab.cli.quest import DEFAULT_DB, QUEST_FLAGS, DbOption, JsonOption, database_errors


@user_errors(flags=QUEST_FLAGS | {"out": "--out"})
def export_test_command(
    out_dir: Annotated[
        Path, typer.Option("--out", help="A new folder for the PNGs and images.npy.")
    ],
    db: DbOption = DEFAULT_DB,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A folder holding the dataset's files.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Write the images the teams predict on, without labels: 00000.png ... (the file name is
    the id of the submission's id,label rows) and images.npy (uint8 N x C x H x W, index = id)."""
    from cnnlab.quest.secret import export_test_images

    with database_errors(db), output_errors("--out", out_dir):
        exported = export_test_images(db, out_dir, data_dir=data_dir)
    if exported.labels_public:
        warnings.warn(
            "these are a public dataset's test images, whose labels ship with the dataset: "
            "CSV scores on this quest cannot be trusted (quest init --submissions model, or "
            "your own --data folder:PATH, make them honest)",
            stacklevel=1,
        )
    result = {"out": str(exported.folder), "images": exported.count}
    if json_output:
        print_json(result)
        return
    out.print(
        f"{exported.count:,} test images (no labels) in {exported.folder}: one PNG per id, and "
        "images.npy. Teams submit one row 'id,label' per image.",
        markup=False,
    )
