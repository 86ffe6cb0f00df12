"""A rollout's analysis: the policy's queries run against Prometheus's HTTP API.

Each query is an instant query (``/api/v1/query``) whose answer, a vector or a
scalar, must lie within the query's bounds. The verdict of a step is the worst
of its queries: fail, then unreachable, then no data, then pass. Unreachable
covers every answer that is not a measurement (connection refused, timeout, an
HTTP error, a query Prometheus refuses): the rollout pauses rather than promote
or roll back blindly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import httpx

from webhook.templating.rollout_policy import Analysis, Query

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_SERIES = 1000


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no-data"  # a query that requires data had none: counts as a failure
    UNREACHABLE = "unreachable"


_WORST_FIRST = (Verdict.FAIL, Verdict.UNREACHABLE, Verdict.NO_DATA, Verdict.PASS)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str = ""  # the first query's reason at the worst verdict, e.g. "error-rate 0.034 > 0.01 at 10 %"
    values: Mapping[str, float | None] = field(default_factory=dict)  # query name -> value judged


def escape(value: str) -> str:
    """``value`` safe inside a PromQL string literal, double- or single-quoted."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def render(query: str, labels: Mapping[str, str]) -> str:
    """The query with ``{{namespace}}``, ``{{name}}``, ``{{model}}``, ``{{version}}`` replaced, escaped."""
    return _PLACEHOLDER.sub(lambda m: escape(labels.get(m.group(1), "")), query)


def client(
    timeout: float, transport: httpx.AsyncBaseTransport | None = None, verify: str | bool = True
) -> httpx.AsyncClient:
    """A client for the analysis; ``verify`` is a CA bundle path for an in-cluster Prometheus over TLS."""
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout), verify=verify)


async def analyse(analysis: Analysis, labels: Mapping[str, str], percent: int, http: httpx.AsyncClient) -> Outcome:
    """Run every query of ``analysis`` for the object and version in ``labels``, judged at ``percent``."""
    judged: list[tuple[Verdict, str]] = []
    values: dict[str, float | None] = {}
    for query in analysis.queries:
        verdict, reason, value = await _one(analysis, query, labels, percent, http)
        judged.append((verdict, reason))
        values[query.name] = value
    for worst in _WORST_FIRST:
        reasons = [r for v, r in judged if v is worst]
        if reasons:
            return Outcome(worst, reasons[0] if worst is not Verdict.PASS else "", values)
    return Outcome(Verdict.PASS, "", values)


async def _one(
    analysis: Analysis, query: Query, labels: Mapping[str, str], percent: int, http: httpx.AsyncClient
) -> tuple[Verdict, str, float | None]:
    url = analysis.prometheus.rstrip("/") + "/api/v1/query"
    try:
        response = await http.post(url, data={"query": render(query.query, labels)}, timeout=analysis.timeout_seconds)
    except httpx.HTTPError as err:
        return Verdict.UNREACHABLE, f"{query.name}: Prometheus at {analysis.prometheus} unreachable ({_say(err)})", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error") if isinstance(body, dict) else None
        said = f": {str(detail)[:200]}" if detail else ""
        return Verdict.UNREACHABLE, f"{query.name}: Prometheus answered HTTP {response.status_code}{said}", None
    samples = _samples(body.get("data"))
    if samples is None:
        return Verdict.UNREACHABLE, f"{query.name}: Prometheus answered a result that is not a vector or scalar", None
    samples = [s for s in samples if not math.isnan(s)]
    if not samples:
        if query.require_data:
            return Verdict.NO_DATA, f"{query.name}: no data at {percent} %", None
        return Verdict.PASS, "", None
    # Several series: the one furthest out of bounds speaks for all.
    if query.max is not None and max(samples) > query.max:
        worst = max(samples)
        return Verdict.FAIL, f"{query.name} {_num(worst)} > {_num(query.max)} at {percent} %", worst
    if query.min is not None and min(samples) < query.min:
        worst = min(samples)
        return Verdict.FAIL, f"{query.name} {_num(worst)} < {_num(query.min)} at {percent} %", worst
    return Verdict.PASS, "", max(samples) if query.max is not None else min(samples)


def _samples(data: object) -> list[float] | None:
    if not isinstance(data, dict):
        return None
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "scalar" and isinstance(result, list):
            return [float(result[1])]
        if kind == "vector" and isinstance(result, list):
            return [float(series["value"][1]) for series in result[:MAX_SERIES]]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None


def _num(value: float) -> str:
    return f"{value:.6g}"


def _say(err: httpx.HTTPError) -> str:
    text = str(err) or type(err).__name__
    return text[:200]
