"""The baselines footer compares with the slide's MNIST score only on MNIST."""

from cnnlab.cli.quest_baselines import slide_best_caption


def test_on_mnist_the_slide_score_is_a_comparison():
    assert slide_best_caption("mnist").startswith("For comparison, the slide's best")


def test_on_fashion_mnist_the_slide_score_is_named_as_mnists():
    caption = slide_best_caption("fashion-mnist")
    assert "For comparison" not in caption
    assert "is MNIST's: it does not compare with scores on fashion-mnist" in caption
