"""evaluation/classifier.py: a torchvision classifier from a local state dict, predictions, semantic scores."""

import pytest
import torch
import torchvision
from torchvision.transforms.v2 import functional as TF

from lit_colorization.evaluation.classifier import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    agreement,
    list_classifiers,
    load_classifier,
    top1_accuracy,
    uses_imagenet_labels,
)
from lit_colorization.store.checkpoint import CheckpointError

SMALL_CLASSIFIER = "mobilenet_v3_small"


@pytest.fixture(scope="module")
def saved_weights(tmp_path_factory):
    """A randomly initialised torchvision classifier saved as a plain state dict, as users save VGG-16."""
    torch.manual_seed(0)
    network = torchvision.models.get_model(SMALL_CLASSIFIER, weights=None).eval()
    path = tmp_path_factory.mktemp("classifier") / "weights.pth"
    torch.save(network.state_dict(), path)
    return path, network


def test_the_loaded_classifier_predicts_like_the_saved_network(saved_weights):
    path, reference = saved_weights
    classifier = load_classifier(SMALL_CLASSIFIER, path, input_size=64)
    images = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    predictions = classifier.predict(images)
    with torch.no_grad():
        prepared = TF.normalize(TF.resize(images, [64, 64], antialias=True), IMAGENET_MEAN, IMAGENET_STD)
        expected = reference(prepared).argmax(dim=1)
    assert predictions.dtype == torch.int64 and predictions.shape == (6,)
    assert torch.equal(predictions, expected)
    assert not classifier.network.training
    assert agreement(classifier.predict(images), predictions) == 1.0


def test_top1_and_agreement_are_fractions_of_equal_entries():
    predictions = torch.tensor([1, 2, 3, 4])
    assert top1_accuracy(predictions, torch.tensor([1, 2, 0, 0])) == 0.5
    assert agreement(predictions, torch.tensor([1, 2, 3, 0])) == 0.75
    with pytest.raises(ValueError, match="equal length"):
        agreement(predictions, torch.tensor([1, 2]))


def test_imagenet_labels_are_the_1000_sorted_wnids():
    wnids = [f"n{index:08d}" for index in range(1000)]
    assert uses_imagenet_labels(wnids)
    assert not uses_imagenet_labels(wnids[::-1])
    assert not uses_imagenet_labels(wnids[:999])
    assert not uses_imagenet_labels(["astronaut", *wnids[1:]])


def test_bad_classifier_inputs_give_one_line_errors(saved_weights, tmp_path):
    path, _ = saved_weights
    assert "vgg16" in list_classifiers() and SMALL_CLASSIFIER in list_classifiers()
    with pytest.raises(ValueError, match="unknown torchvision classifier 'vgg17'"):
        load_classifier("vgg17", path)
    with pytest.raises(FileNotFoundError, match="missing.pth: classifier weights file not found"):
        load_classifier("vgg16", tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="weights.pth: weights do not fit SqueezeNet") as error:
        load_classifier("squeezenet1_1", path)
    assert "\n" not in str(error.value)
