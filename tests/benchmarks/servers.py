"""The two comparison servers of the admission benchmark, run with modelpin's uvicorn settings.

``echo``: parses the review and answers with no patch: the ceiling of the stack.
``naive``: resolves every template with fresh ``MlflowClient`` calls on every
request, no cache: what polling controllers and hand-written hooks do.

Run as ``python -m tests.benchmarks.servers {echo|naive} PORT CERT KEY [TRACKING_URI]``.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from webhook.admission.review import patched, review
from webhook.templating.grammar import SelectorKind, parse
from webhook.templating.spec_fields import interesting_strings


def _answer(uid: str, ops: list[dict[str, Any]]) -> Response:
    # modelpin's own response builders: the answer costs what modelpin's costs
    return Response(review(uid, patched(ops)), media_type="application/json")


def echo_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        parsed = orjson.loads(await request.body())
        return _answer(parsed["request"]["uid"], [])

    return app


def naive_app(tracking_uri: str) -> FastAPI:
    from mlflow.tracking import MlflowClient

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def resolve(text: str) -> str:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        ref = parse(text).reference
        if ref.selector.kind is SelectorKind.ALIAS:
            version = client.get_model_version_by_alias(ref.name, ref.selector.value).version
        elif ref.selector.kind is SelectorKind.VERSION:
            version = ref.selector.value
        else:
            version = client.get_model_version_by_alias(ref.name, "champion").version
        uri = str(client.get_model_version_download_uri(ref.name, version))
        if uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].partition("/")
            uri = f"{client.get_run(run_id).info.artifact_uri}/{path}"
        return uri

    @app.post("/mutate")
    async def mutate_naive(request: Request) -> Response:
        parsed = orjson.loads(await request.body())
        obj = parsed["request"]["object"]
        ops = []
        for pointer, text, _ in interesting_strings(obj, set()):
            ops.append({"op": "replace", "path": pointer, "value": await run_in_threadpool(resolve, text)})
        return _answer(parsed["request"]["uid"], ops)

    return app


def main() -> None:
    kind, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    app = echo_app() if kind == "echo" else naive_app(sys.argv[5])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
        server_header=False,
        backlog=2048,
    )


if __name__ == "__main__":
    main()
