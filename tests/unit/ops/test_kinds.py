"""kubectl's names for the four built-in kinds."""

from __future__ import annotations

import pytest

from webhook.ops.kinds import KindError, parse_target, singular
from webhook.reconcile.kube import Kind
from webhook.templating.template_paths import KINDS


@pytest.mark.parametrize(
    ("text", "plural", "group"),
    [
        ("isvc/iris", "inferenceservices", "serving.kserve.io"),
        ("InferenceServices/iris", "inferenceservices", "serving.kserve.io"),
        ("sdep/iris", "seldondeployments", "machinelearning.seldon.io"),
        ("seldondeployment/iris", "seldondeployments", "machinelearning.seldon.io"),
        ("model/iris", "models", "mlops.seldon.io"),
        ("models/iris", "models", "mlops.seldon.io"),
        ("tm/iris", "trainedmodels", "serving.kserve.io"),
        ("trainedmodel.serving.kserve.io/iris", "trainedmodels", "serving.kserve.io"),
    ],
)
def test_kubectl_names_and_short_names(text: str, plural: str, group: str) -> None:
    named, name = parse_target(text)
    assert (named.kind.plural, named.kind.group, name) == (plural, group, "iris")


@pytest.mark.parametrize(
    ("text", "message"), [("iris", "KIND/NAME"), ("pod/x", "unknown kind 'pod'"), ("isvc/", "KIND/NAME")]
)
def test_bad_targets_are_named(text: str, message: str) -> None:
    with pytest.raises(KindError, match=message):
        parse_target(text)


def test_printed_names() -> None:
    assert singular(Kind("serving.kserve.io", "v1beta1", "inferenceservices")) == "inferenceservice"
    assert singular(Kind("example.com", "v1", "widgets")) == "widgets"


def test_every_catalogued_kind_is_named_as_kubectl_names_it() -> None:
    for spec in KINDS:
        for text in (spec.singular, spec.plural, *spec.short_names, f"{spec.plural}.{spec.group}"):
            named, _ = parse_target(f"{text}/x")
            assert named.kind == Kind(spec.group, spec.versions[0], spec.plural)
            assert named.singular == spec.singular == singular(named.kind)
