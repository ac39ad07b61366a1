"""`cnnlab tour`: a short walk through the lecture, computed live."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.rule import Rule

from cnnlab.cli.common import out, print_json, user_errors
from cnnlab.cli.explain import render_conv, render_pool
from cnnlab.cli.zoo import model_zoo, zoo_table
from cnnlab.ops import SLIDE_2D, SLIDE_2D_STRIDE2, SLIDE_POOL_AVG, SLIDE_POOL_MAX, SLIDE_RGB
from cnnlab.summary import format_darknet, format_keras, summarize


@user_errors
def tour_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A walk through the lecture: kernels, pooling, LeNet-like, Darknet19, the model zoo."""
    lenet, darknet = summarize("lenet-like"), summarize("darknet19")
    conv_examples = (SLIDE_2D, SLIDE_2D_STRIDE2, SLIDE_RGB)
    pools = (SLIDE_POOL_MAX, SLIDE_POOL_AVG)
    if json_output:
        print_json(
            {
                "convolution": {e.name: e.explain().to_dict() for e in conv_examples},
                "pooling": {e.name: e.explain().to_dict() for e in pools},
                "lenet-like": lenet.to_dict(),
                "darknet19": darknet.to_dict(),
                "models": model_zoo(),
            }
        )
        return
    steps = [
        ("1. A kernel slides over the image (slide 'CNN Kernels')", None),
        ("2. A stride of 2 reduces the dimensionality (Figure 14-4)", None),
        (
            "3. Three colour channels, one kernel channel each, plus a bias ('CNN Kernels in 3D')",
            None,
        ),
    ]
    for (title, _), example in zip(steps, conv_examples, strict=True):
        out.print(Rule(title, align="left"))
        render_conv(example, [], [example.explain()], all_terms=False)
        out.print()
    out.print(Rule("4. Pooling subsamples: max and average ('CNN Pooling')", align="left"))
    for example in pools:
        render_pool(example.explain(), example.title, example.note)
        out.print()
    out.print(Rule("5. The LeNet-like Keras model of the slides: model.summary()", align="left"))
    out.print(format_keras(lenet))
    out.print()
    out.print(Rule("6. Darknet19, as Darknet prints it ('YOLO' slides)", align="left"))
    out.print(format_darknet(darknet))
    out.print()
    out.print(Rule("7. The model zoo: LeNet to ResNet-152", align="left"))
    out.print(zoo_table(model_zoo()))
    out.print(
        "\nNext: cnnlab explain conv --input photo.png --kernel sobel-x --out maps.png, "
        "cnnlab summary MODEL --style darknet, cnnlab --help"
    )
