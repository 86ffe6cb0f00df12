"""The committed admission CEL is what the generator makes from the declared paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from webhook.generators import admission_cel
from webhook.templating.template_paths import KINDS

ROOT = Path(__file__).resolve().parents[3]


def test_committed_files_are_what_the_generator_writes() -> None:
    assert admission_cel.main(["--check", "--root", str(ROOT)]) == 0, "run: python -m webhook.generators.admission_cel"


def test_check_fails_on_a_drifted_file_and_writing_repairs_it(tmp_path: Path) -> None:
    for rel in admission_cel.outputs():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    guard = tmp_path / admission_cel.BASE_GUARD
    guard.write_text(guard.read_text().replace("'models:/'", "'model:/'", 1))
    assert admission_cel.main(["--check", "--root", str(tmp_path)]) == 1
    assert admission_cel.main(["--root", str(tmp_path)]) == 0
    assert admission_cel.main(["--check", "--root", str(tmp_path)]) == 0


def test_base_and_chart_carry_the_same_cel() -> None:
    chart = yaml.safe_load((ROOT / admission_cel.CHART_FILE).read_text())
    hook, reconciler = yaml.safe_load((ROOT / admission_cel.BASE_WEBHOOK).read_text())["webhooks"]
    policy, binding = yaml.safe_load_all((ROOT / admission_cel.BASE_GUARD).read_text())
    assert hook["rules"] == reconciler["rules"] == chart["webhook"]["rules"]
    assert hook["matchConditions"][:-1] == chart["webhook"]["matchConditions"]
    assert policy["spec"] == chart["guard"]
    assert binding["spec"]["validationActions"] == chart["guardBinding"]["validationActions"]


def test_the_guard_names_every_declared_path_once() -> None:
    messages = [v["message"] for v in admission_cel.guard_spec()["validations"]]
    for kind in KINDS:
        for path in kind.paths:
            named = [m for m in messages if m.startswith(f"{kind.kind} {path.dotted()} holds")]
            assert len(named) == 1, (kind.kind, path.dotted())
    assert len(messages) == 1 + sum(len(k.paths) for k in KINDS)


def test_the_match_condition_reaches_the_deepest_seldon_node() -> None:
    expression = admission_cel.match_condition()
    # one nested exists() per children level, below the graph
    assert expression.count("['children']") >= 10
    assert "['canary']" in expression and "['workerSpec']" in expression and "['initContainers']" in expression


def test_the_reconciler_has_an_entry_of_its_own_that_fails_closed() -> None:
    everyone, reconciler = admission_cel.base_webhook()["webhooks"]
    user = "system:serviceaccount:modelpin-system:modelpin-reconciler"
    assert everyone["failurePolicy"] == "Ignore"
    assert everyone["matchConditions"][-1] == {
        "name": "not-the-reconciler",
        "expression": f"request.userInfo.username != '{user}'",
    }
    assert reconciler["failurePolicy"] == "Fail"
    assert reconciler["matchConditions"] == [
        {"name": "the-reconciler", "expression": f"request.userInfo.username == '{user}'"}
    ]
    # every namespace and every object: the check is not left to what the object holds
    assert "namespaceSelector" not in reconciler and "objectSelector" not in reconciler
    assert reconciler["clientConfig"] == everyone["clientConfig"]
    assert reconciler["clientConfig"]["service"]["path"] == "/mutate"
