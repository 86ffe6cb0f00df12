"""modelpin's alert rules, checked and unit-tested by a real promtool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.tools import REPO, run

RULES = REPO / "manifests" / "monitoring" / "prometheusrule.yaml"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts.test.yaml"


def rule_groups() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text())
    assert doc["kind"] == "PrometheusRule"
    return dict(doc["spec"])


def alert_names() -> set[str]:
    return {r["alert"] for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r}


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    # promtool reads plain rule files: the PrometheusRule's spec is exactly one.
    path = tmp_path / "modelpin.rules.yaml"
    path.write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    return path


def test_promtool_checks_every_rule(rule_file: Path) -> None:
    out = run("promtool", "check", "rules", "--lint=all", "--lint-fatal", str(rule_file))
    assert f"SUCCESS: {len(alert_names())} rules found" in out.stdout + out.stderr


def test_promtool_unit_tests_pass(rule_file: Path, tmp_path: Path) -> None:
    tests: dict[str, Any] = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(rule_file)]
    path = tmp_path / "alerts.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    out = run("promtool", "test", "rules", str(path))
    assert "SUCCESS" in out.stdout + out.stderr


def test_promtool_unit_tests_can_fail(rule_file: Path, tmp_path: Path) -> None:
    # The same tests against rules whose thresholds never trip: every firing expectation must fail,
    # which shows the expectations are checked at all.
    groups = rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule["expr"] = f"({rule['expr']}) and on () vector(0) > 1"
    rule_file.write_text(yaml.safe_dump(groups, sort_keys=False))
    tests: dict[str, Any] = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(rule_file)]
    path = tmp_path / "alerts.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    out = run("promtool", "test", "rules", str(path), check=False)
    assert out.returncode != 0
    failed = out.stdout + out.stderr
    for name in alert_names():
        assert f"alertname: {name}" in failed, name


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert alert_names() - firing == set()
    assert alert_names() - silent == set()
    assert firing | silent <= alert_names()  # no test of an alert that no longer exists


def test_every_alert_is_documented() -> None:
    readme = (REPO / "manifests" / "monitoring" / "README.md").read_text()
    for name in alert_names():
        assert f"`{name}`" in readme, name
