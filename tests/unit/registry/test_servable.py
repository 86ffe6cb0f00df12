"""What admission says of a resolved field's servability, per namespace setting."""

from __future__ import annotations

from typing import Any

from tests.support.fakes import make_settings
from tests.unit.registry.test_resolver import LOGGED_ID, LoggedRegistry, logged_model
from webhook.registry.resolver import Resolver
from webhook.registry.servability import Flavors, Missing
from webhook.registry.servable import FINE, checker, mode
from webhook.templating.grammar import parse

FIELD = "/spec/predictor/model/storageUri"


def isvc(model_format: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "spec": {"predictor": {"model": {"modelFormat": {"name": model_format}, "storageUri": "x"}}},
    }


async def resolver_with(**policies: Any) -> tuple[Resolver, LoggedRegistry]:
    registry = LoggedRegistry()
    registry.add("iris", 1, "s3://m/1")
    registry.add("iris", 2, "s3://m/2")
    registry.add("iris", 3, "s3://m/3")
    registry.logged[LOGGED_ID] = logged_model()
    registry.mlmodels["s3://m/1"] = Flavors(frozenset({"python_function"}), "s3://m/1/MLmodel")
    registry.mlmodels["s3://m/2"] = Flavors(frozenset({"python_function", "sklearn"}), "s3://m/2/MLmodel")
    registry.mlmodels["s3://m/3"] = Missing("s3://m/3/MLmodel")
    return Resolver(make_settings(**policies), {"mlflow": registry}), registry


async def resolved(resolver: Resolver, text: str) -> Any:
    return (await resolver.resolve(resolver.plan(parse(text), "prod"))).resolution


async def test_off_checks_nothing() -> None:
    resolver, _ = await resolver_with()
    assert checker(resolver, mode(resolver.settings, "prod"), isvc("sklearn")) is None
    await resolver.aclose()


async def test_deny_refuses_a_mismatch_naming_version_flavors_and_server() -> None:
    resolver, _ = await resolver_with(namespaces={"prod": {"servability": "deny"}})
    check = checker(resolver, mode(resolver.settings, "prod"), isvc("sklearn"))
    assert check is not None
    verdict = check(FIELD, await resolved(resolver, "models:/iris/1"))
    assert verdict.warning is None and verdict.refusal is not None
    assert "'iris' version 1" in verdict.refusal and "'sklearn' flavor" in verdict.refusal
    assert "python_function" in verdict.refusal and "/spec/predictor/model/modelFormat/name" in verdict.refusal
    assert check(FIELD, await resolved(resolver, "models:/iris/2")) == FINE
    # another namespace keeps the global setting: off
    assert checker(resolver, mode(resolver.settings, "dev"), isvc("sklearn")) is None
    await resolver.aclose()


async def test_warn_warns_naming_the_field() -> None:
    resolver, _ = await resolver_with(servability="warn")
    check = checker(resolver, mode(resolver.settings, "prod"), isvc("sklearn"))
    assert check is not None
    verdict = check(FIELD, await resolved(resolver, "models:/iris/1"))
    assert verdict.refusal is None and verdict.warning is not None and verdict.warning.startswith(FIELD)
    await resolver.aclose()


async def test_what_cannot_be_read_is_at_most_a_warning() -> None:
    resolver, _ = await resolver_with(servability="deny")
    check = checker(resolver, mode(resolver.settings, "prod"), isvc("sklearn"))
    assert check is not None
    no_mlmodel = check(FIELD, await resolved(resolver, "models:/iris/3"))
    assert no_mlmodel.refusal is None and no_mlmodel.warning is not None and "no MLmodel" in no_mlmodel.warning
    logged = check(FIELD, await resolved(resolver, f"models:/{LOGGED_ID}"))  # s3, nobody can read it here
    assert logged.refusal is None and logged.warning is not None
    assert f"logged model {LOGGED_ID} not checked" in logged.warning
    # a server modelpin knows no flavor for: nothing to say
    custom = checker(resolver, mode(resolver.settings, "prod"), isvc("triton"))
    assert custom is not None and custom(FIELD, await resolved(resolver, "models:/iris/1")) == FINE
    await resolver.aclose()
