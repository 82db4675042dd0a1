"""The OpenAI-compatible FastAPI app over a local teacher.

    app = create_app(LocalTeacher.load("tiny-teacher"), ServerSettings(served_name="tiny-teacher"),
                     api_key=api_key_from_env())
    uvicorn.run(app)      # or distil.server.run.serve / distil.server.testing.running_server

Endpoints: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions,
POST /v1/completions, GET /health (open, for readiness), GET /admin/stats (with
`settings.admin`). Every error answers `{"error": {"message", "type", "param", "code"}}`.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from distil.server.batching import Batcher, Overloaded
from distil.server.guard import Guard
from distil.server.protocol import (
    APIError,
    ChatRequest,
    CompletionRequest,
    check_content_type,
    parse_json,
    parse_request,
)
from distil.server.served import ServedModel
from distil.server.settings import ServeError, ServerSettings, clean_api_key
from distil.server.stats import RequestStats, request_key
from distil.server.watermark import WatermarkKey, marked_teacher
from distil.teachers import LocalTeacher

log = logging.getLogger("distil.server")


def create_app(
    teacher: LocalTeacher,
    settings: ServerSettings,
    api_key: str | None = None,
    watermark_key: WatermarkKey | None = None,
) -> FastAPI:
    """The app serving `teacher` as `settings.served_name`; `api_key` None means no auth;
    with `settings.watermark`, what it serves is marked under `watermark_key`."""
    check_settings(teacher, settings)
    teacher = marked_teacher(teacher, settings, watermark_key)
    api_key = clean_api_key(api_key)
    batcher = Batcher(
        teacher,
        max_batch_size=settings.max_batch_size,
        wait_s=settings.batch_wait_ms / 1000,
        max_pending=settings.max_pending,
    )
    served, stats = ServedModel(teacher, settings, batcher), RequestStats(by_key=settings.admin)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served, app.state.stats, app.state.batcher = served, stats, batcher
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=settings.max_body_bytes, stats=stats)
    _add_error_handlers(app)
    _add_routes(app, served, stats, batcher)
    return app


def check_settings(teacher: LocalTeacher, settings: ServerSettings) -> None:
    """Refuse settings the model cannot honour."""
    vocab = teacher.model.get_output_embeddings().weight.shape[0]
    if settings.max_top_logprobs > vocab:
        raise ServeError(
            f"--max-top-logprobs {settings.max_top_logprobs} exceeds the model's "
            f"vocabulary of {vocab} tokens; pick at most {vocab}"
        )


def _add_routes(app: FastAPI, served: ServedModel, stats: RequestStats, batcher: Batcher) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [served.model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str) -> dict[str, Any]:
        if model_id != served.settings.served_name:
            raise APIError(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        return served.model_card()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        return await _generation(request, "chat", ChatRequest, served, stats)

    @app.post("/v1/completions")
    async def completions(request: Request) -> JSONResponse:
        return await _generation(request, "completions", CompletionRequest, served, stats)

    if served.settings.admin:

        @app.get("/admin/stats")
        async def admin_stats() -> dict[str, Any]:
            return stats.snapshot(batcher.stats)


async def _generation(
    request: Request, endpoint: str, schema: type, served: ServedModel, stats: RequestStats
) -> JSONResponse:
    """Parse, run and count one generation request."""
    stats.count_received(endpoint, request.headers)
    check_content_type(request.headers.get("content-type"))
    body = await request.body()
    payload = parse_json(body)
    served.check_counts(payload, endpoint)  # before validating: millions of ids hold the loop
    parsed = parse_request(schema, payload)
    handler = served.chat if endpoint == "chat" else served.complete
    try:
        answer = await handler(parsed)
    except Overloaded as err:
        raise APIError(
            503,
            f"the server is overloaded ({err}); retry later",
            type="server_error",
            code="overloaded",
            headers={"Retry-After": "1"},
        ) from None
    except APIError:
        raise
    except Exception as err:  # the model call failed: answer it here, the server goes on
        log.error("%s request failed: %s: %s", endpoint, type(err).__name__, err)
        raise APIError(
            500, f"the model failed to answer: {type(err).__name__}: {err}", type="server_error"
        ) from None
    stats.count_completed(endpoint, request_key(request.headers, body))
    return JSONResponse(answer)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message = (
            f"Unknown request URL: {request.method} {request.url.path}"
            if err.status_code == 404
            else str(err.detail)
        )
        error = APIError(err.status_code, message, code="unknown_url" if err.status_code == 404 else None)
        return JSONResponse(error.body(), status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def server_error(_request: Request, err: Exception) -> JSONResponse:
        log.error("request failed: %s: %s", type(err).__name__, err)
        error = APIError(
            500, f"the server failed to answer: {type(err).__name__}: {err}", type="server_error"
        )
        return JSONResponse(error.body(), status_code=500)
