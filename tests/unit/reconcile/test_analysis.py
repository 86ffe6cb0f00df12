"""The analysis client: queries rendered and escaped, answers judged, failures to answer told apart."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import httpx
import pytest

from webhook.reconcile.analysis import Verdict, analyse, client, escape, render
from webhook.templating.rollout_policy import Analysis, Query

LABELS = {"namespace": "ml", "name": "iris", "model": "iris demo", "version": "4"}


def policy(*queries: Query) -> Analysis:
    return Analysis(prometheus="http://prometheus.test:9090/", queries=list(queries), timeout_seconds=1)


ERRORS = Query(name="error-rate", query='errors{namespace="{{namespace}}",v="{{version}}"}', max=0.01)
THROUGHPUT = Query(name="throughput", query='rps{model="{{ model }}"}', min=5)


def vector(*values: str) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, v]} for v in values]},
    }


def prometheus(answers: dict[str, Any], seen: list[str] | None = None) -> httpx.AsyncClient:
    """Prometheus's query endpoint as a transport: each query's answer chosen by its metric name."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/query"
        query = urllib.parse.parse_qs(request.content.decode())["query"][0]
        if seen is not None:
            seen.append(query)
        answer = answers[query.split("{")[0]]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    return client(1.0, httpx.MockTransport(handle))


async def run(answers: dict[str, Any], *queries: Query, percent: int = 10, seen: list[str] | None = None) -> Any:
    async with prometheus(answers, seen) as http:
        return await analyse(policy(*(queries or (ERRORS,))), LABELS, percent, http)


def test_placeholders_are_replaced_and_escaped_for_promql() -> None:
    assert render('x{a="{{namespace}}",b="{{ name }}"}', LABELS) == 'x{a="ml",b="iris"}'
    assert escape("a\"b\\c'd\ne") == "a\\\"b\\\\c\\'d\\ne"
    hostile = {"model": '"} or vector(1) #'}
    assert render('m{model="{{model}}"}', hostile) == 'm{model="\\"} or vector(1) #"}'


async def test_the_query_sent_is_the_rendered_one() -> None:
    seen: list[str] = []
    await run({"errors": vector("0"), "rps": vector("9")}, ERRORS, THROUGHPUT, seen=seen)
    assert seen == ['errors{namespace="ml",v="4"}', 'rps{model="iris demo"}']


async def test_within_bounds_passes_with_the_values() -> None:
    outcome = await run({"errors": vector("0.002"), "rps": vector("12")}, ERRORS, THROUGHPUT)
    assert outcome.verdict is Verdict.PASS and outcome.reason == ""
    assert outcome.values == {"error-rate": 0.002, "throughput": 12.0}


async def test_above_max_fails_with_the_documented_reason() -> None:
    outcome = await run({"errors": vector("0.034")}, percent=10)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reason == "error-rate 0.034 > 0.01 at 10 %"


async def test_below_min_fails() -> None:
    outcome = await run({"rps": vector("2")}, THROUGHPUT, percent=50)
    assert (outcome.verdict, outcome.reason) == (Verdict.FAIL, "throughput 2 < 5 at 50 %")


async def test_the_worst_series_speaks_for_all() -> None:
    outcome = await run({"errors": vector("0.001", "0.5", "0.002")})
    assert outcome.reason == "error-rate 0.5 > 0.01 at 10 %"


async def test_a_scalar_is_judged_too() -> None:
    outcome = await run({"errors": {"status": "success", "data": {"resultType": "scalar", "result": [0, "0.2"]}}})
    assert outcome.verdict is Verdict.FAIL


@pytest.mark.parametrize("answer", [vector(), vector("NaN")])
async def test_no_data_fails_when_required(answer: dict[str, Any]) -> None:
    outcome = await run({"errors": answer})
    assert (outcome.verdict, outcome.reason) == (Verdict.NO_DATA, "error-rate: no data at 10 %")


async def test_no_data_passes_when_not_required() -> None:
    lenient = ERRORS.model_copy(update={"require_data": False})
    assert (await run({"errors": vector()}, lenient)).verdict is Verdict.PASS


async def test_a_fail_outranks_an_unreachable_query() -> None:
    outcome = await run({"errors": vector("1"), "rps": httpx.ConnectError("refused")}, ERRORS, THROUGHPUT)
    assert outcome.verdict is Verdict.FAIL


async def test_unreachable_outranks_no_data() -> None:
    outcome = await run({"errors": vector(), "rps": httpx.ReadTimeout("slow")}, ERRORS, THROUGHPUT)
    assert outcome.verdict is Verdict.UNREACHABLE
    assert outcome.reason == "throughput: Prometheus at http://prometheus.test:9090/ unreachable (slow)"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (httpx.ConnectError("connection refused"), "unreachable (connection refused)"),
        (httpx.Response(503, text="down"), "Prometheus answered HTTP 503"),
        (
            httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}),
            "Prometheus answered HTTP 400: parse error at char 3",
        ),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "not a vector or scalar"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, "x"]}]}}, "not a vector"),
        (httpx.Response(200, text="<html>"), "Prometheus answered HTTP 200"),
    ],
)
async def test_anything_but_a_measurement_is_unreachable(answer: Any, says: str) -> None:
    outcome = await run({"errors": answer})
    assert outcome.verdict is Verdict.UNREACHABLE
    assert says in outcome.reason, outcome.reason
    assert outcome.values == {"error-rate": None}


async def test_a_silent_prometheus_is_cut_off_by_the_policys_timeout() -> None:
    # A loopback socket that accepts and never answers: httpx's own read timeout must end the query.
    release = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await reader.read(65536)
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    analysis = Analysis(prometheus=f"http://127.0.0.1:{port}", queries=[ERRORS], timeout_seconds=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with client(30.0) as http:
            outcome = await analyse(analysis, LABELS, 10, http)
        elapsed = loop.time() - started
    finally:
        release.set()
        await asyncio.gather(*handlers)
        server.close()
        await server.wait_closed()
    assert outcome.verdict is Verdict.UNREACHABLE and "ReadTimeout" in outcome.reason
    assert 0.3 <= elapsed < 2
