"""Smoke test of the test control plane itself."""

from __future__ import annotations

import json

import pytest

from tests.e2e.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.modelpin.test
spec:
  group: smoke.modelpin.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""

WIDGET = """
apiVersion: smoke.modelpin.test/v1
kind: Widget
metadata: {name: w, namespace: default}
spec: {anything: {goes: [1, 2]}}
"""


def test_default_namespace_listed(control_plane: ControlPlane) -> None:
    names = control_plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert "namespace/default" in names


def test_admin_can_do_anything(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"


def test_crd_with_unknown_fields_becomes_established(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", "-", input=CRD)
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.smoke.modelpin.test")
    control_plane.kubectl("apply", "-f", "-", input=WIDGET)
    widget = json.loads(control_plane.kubectl("get", "widget", "w", "-n", "default", "-o", "json").stdout)
    assert widget["spec"] == {"anything": {"goes": [1, 2]}}
