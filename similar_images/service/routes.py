"""The API routes: parse the request, call the engine, shape the JSON."""

from __future__ import annotations

import logging
import mimetypes
import time
from functools import partial
from pathlib import Path

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from similar_images.errors import ImageError
from similar_images.models.score_bands import no_close_match, verdict
from similar_images.service.engine import Engine, Found
from similar_images.service.schemas import (
    ERRORS,
    AddResponse,
    DuplicatesResponse,
    Health,
    RemoveResponse,
    SearchResponse,
    Stats,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

router = APIRouter()
write_router = APIRouter()

# ImageError reason -> status
_STATUS = {"http error": 502, "timeout": 504}
MAX_TEXT_CHARS = 1000  # CLIP reads 77 tokens; a longer text is a mistake or an abuse
_SEARCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary", "description": "The query image file."},
                       "k": {"type": "integer", "minimum": 1, "description": "Results wanted."}}}},
    "application/json": {"schema": {"oneOf": [
        {"type": "object", "required": ["id"], "title": "By id",
         "properties": {"id": {"type": "integer"}, "k": {"type": "integer", "minimum": 1}}},
        {"type": "object", "required": ["url"], "title": "By URL (with --allow-urls)",
         "properties": {"url": {"type": "string"}, "k": {"type": "integer", "minimum": 1}}},
        {"type": "object", "required": ["text"], "title": "By words (CLIP databases)",
         "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
                        "k": {"type": "integer", "minimum": 1}}}]}},
}}}
_ADD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["images"],
    "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
_IMAGE_RESPONSES = {**ERRORS, 200: {"content": {"image/*": {}}, "description": "The image file."}}
_THUMB_RESPONSES = {**ERRORS, 200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."}}


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


async def call(function, *args, abandon_on_timeout: bool = True):
    """Run blocking work off the event loop; package errors become HTTP errors.

    A read is abandoned when the request's time limit cuts it off (its thread finishes
    in the background); a write never is (``abandon_on_timeout=False``).
    """
    try:
        return await anyio.to_thread.run_sync(partial(function, *args), abandon_on_cancel=abandon_on_timeout)
    except (ImageError, LookupError, ValueError) as exc:
        raise HTTPException(*error_status(exc)) from None


def error_status(exc: Exception) -> tuple[int, str] | None:
    """``(status, message)`` of a package error a client caused, or None for a server fault
    (also used by the Ray Serve writer, whose errors travel back to the route that forwarded)."""
    if isinstance(exc, ImageError):
        return _STATUS.get(exc.reason, 400), str(exc)
    if isinstance(exc, LookupError):
        return 404, str(exc.args[0] if exc.args else exc)
    if isinstance(exc, ValueError):
        return 422, str(exc)
    return None


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: what monitors send
async def page():
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.post("/api/search", response_model=SearchResponse, responses=ERRORS, openapi_extra=_SEARCH_BODY,
             summary="Search with an uploaded image, an id or a URL")
async def search(request: Request):
    engine, started = engine_of(request), time.perf_counter()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        kind, answer = "upload", await _search_upload(request, engine)
    elif content_type == "application/json":
        body = await _json_object(request)
        k = parse_k(body.get("k"), engine)
        if len(given := [key for key in ("id", "url", "text") if key in body]) > 1:  # never one silently
            raise HTTPException(422, f"body: give one of id, url or text, not {' and '.join(given)}")
        if "id" in body:
            kind, answer = "id", await _search_id(engine, body["id"], k)
        elif "url" in body:
            kind, answer = "url", await _search_url(engine, body["url"], k)
        elif "text" in body:
            kind, answer = "text", await _search_text(engine, body["text"], k)
        else:
            raise HTTPException(422, 'body: give {"id": N}, {"url": "..."} or {"text": "..."} '
                                     '(or upload a file as multipart "image")')
    else:
        raise HTTPException(415, "send multipart/form-data with an 'image' file, or JSON {\"id\"} / {\"url\"} / "
                                 "{\"text\"}")
    total = time.perf_counter() - started
    engine.stats.record(kind, total)
    answer["timings"]["total_ms"] = round(total * 1000, 2)
    return answer


async def _search_upload(request: Request, engine: Engine) -> dict:
    with engine.batcher.expect():
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "image: send the query image as the multipart file field 'image'")
        k = parse_k(form.get("k"), engine)
        prepared = await call(engine.prepare, await upload.read())
    found = await _submit(engine, prepared, k)
    return _answer(engine, {"kind": "upload", "width": prepared.width, "height": prepared.height},
                   found.results, prepared.decode_s, found)


async def _search_url(engine: Engine, url, k: int) -> dict:
    if not engine.config.allow_urls:
        raise HTTPException(400, "URL queries are off on this server (start it with --allow-urls)")
    if not isinstance(url, str) or not url:
        raise HTTPException(422, "url: a non-empty string")
    with engine.batcher.expect():
        started = time.perf_counter()
        try:
            data = await engine.fetch(url)  # its own bounded threads, not the shared pool
        except ImageError as exc:
            raise HTTPException(_STATUS.get(exc.reason, 400), str(exc)) from None
        prepared = await call(engine.prepare, data)
    found = await _submit(engine, prepared, k)
    return _answer(engine, {"kind": "url", "url": url, "width": prepared.width, "height": prepared.height},
                   found.results, time.perf_counter() - started, found)


async def _search_id(engine: Engine, image_id, k: int) -> dict:
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise HTTPException(422, f"id: an integer, got {image_id!r}"[:200])
    _, results, search_s = await call(engine.search_id, image_id, k)
    return _answer(engine, {"kind": "id", "id": image_id}, results, 0.0,
                   Found(results, model_s=0.0, search_s=search_s, batch_size=0))


async def _search_text(engine: Engine, text, k: int) -> dict:
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
        raise HTTPException(422, f"text: a non-empty string of at most {MAX_TEXT_CHARS} characters")
    found = await call(engine.search_text, text, k)  # refused (422) for a model without a text tower
    return _answer(engine, {"kind": "text", "text": text}, found.results, 0.0, found)


async def _submit(engine: Engine, prepared, k: int) -> Found:
    try:
        return await engine.batcher.submit((prepared, k))
    except ImageError as exc:
        raise HTTPException(_STATUS.get(exc.reason, 400), str(exc)) from None


def _answer(engine: Engine, query: dict, results, decode_s: float, found: Found) -> dict:
    bands = engine.bands
    timings = {"decode_ms": round(decode_s * 1000, 2), "model_ms": round(found.model_s * 1000, 2),
               "search_ms": round(found.search_s * 1000, 2), "total_ms": 0.0, "batch_size": found.batch_size}
    return {"query": query, "results": _hits(results, bands),
            "no_close_match": no_close_match([r.score for r in results], bands), "timings": timings}


def _hits(results, bands) -> list[dict]:
    # 6 decimals, as the CLI's JSON: float32 cosines otherwise print as 1.0000001192092896
    return [{"id": r.id, "name": r.path, "score": score, "verdict": verdict(score, bands),
             "thumbnail_url": f"/api/images/{r.id}/thumbnail", "image_url": f"/api/images/{r.id}"}
            for r, score in ((r, round(float(r.score), 6)) for r in results)]


def parse_k(value, engine: Engine) -> int:
    """``k`` from a form field or JSON value: an integer in 1..max_k (default: default_k)."""
    config = engine.config
    if value is None or value == "":
        return config.default_k
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise HTTPException(422, "k (results wanted): an integer")
    try:
        k = int(value)
    except ValueError:
        raise HTTPException(422, "k (results wanted): an integer") from None
    if not 1 <= k <= config.max_k:
        raise HTTPException(422, f"k (results wanted): between 1 and {config.max_k}, got {k}")
    return k


async def _json_object(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(422, "body: not valid JSON") from None
    except RecursionError:  # json's C parser recurses once per nesting level: '[' * 100000 overflows it
        raise HTTPException(422, "body: JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise HTTPException(422, "body: a JSON object")
    return body


@router.get("/api/images/{image_id}", responses=_IMAGE_RESPONSES, response_class=Response,
            summary="The original image file of an id")
async def image(image_id: int, request: Request):
    path = await call(engine_of(request).image_file, image_id)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type if media_type.startswith("image/") else "application/octet-stream")


@router.get("/api/images/{image_id}/thumbnail", responses=_THUMB_RESPONSES, response_class=Response,
            summary="A JPEG thumbnail of an id (made once, then cached)")
async def thumbnail(image_id: int, request: Request):
    data = await call(engine_of(request).thumbnail, image_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/api/images/{image_id}/duplicates", response_model=DuplicatesResponse, responses=ERRORS,
            summary="Near-duplicates of an id: its neighbours at or above the duplicate threshold")
async def duplicates(image_id: int, request: Request, threshold: float | None = Query(None, ge=-1.0, le=1.0),
                     k: int | None = None):
    engine = engine_of(request)
    results, cosine = await call(engine.duplicates, image_id, threshold, parse_k(k, engine))
    return {"id": image_id, "threshold": cosine, "results": _hits(results, engine.bands)}


@router.get("/api/health", response_model=Health, responses=ERRORS, summary="Is it up, and what does it serve")
async def health(request: Request):
    engine = engine_of(request)
    config = engine.config
    info = engine.describe()
    return {"status": "ok", "count": info["count"], "model": info["model"], "index": info["index"],
            "text_queries": info["text_queries"], "dimension": info["dimension"], "allow_urls": config.allow_urls,
            "allow_writes": config.allow_writes,
            "max_upload_bytes": config.max_upload_bytes, "max_k": config.max_k, "default_k": config.default_k}


@router.get("/api/stats", response_model=Stats, responses=ERRORS, summary="Latency percentiles since start")
async def stats(request: Request):
    engine = engine_of(request)
    info, report = engine.describe(), engine.stats.report()
    sizes = engine.batcher.batch_sizes
    return {"count": info["count"], "model": info["model"], "index": info["index"], **report,
            "mean_batch_size": round(sum(sizes) / len(sizes), 2) if sizes else None}


@write_router.post("/api/images", response_model=AddResponse, responses=ERRORS, openapi_extra=_ADD_BODY,
                   summary="Add uploaded images (needs --allow-writes and the token)")
async def add_images(request: Request):
    engine = engine_of(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise HTTPException(415, "send the images as multipart/form-data file fields 'images'")
    form = await request.form(max_files=1000, max_fields=8)
    files = [item for item in form.getlist("images") if isinstance(item, UploadFile)]
    if not files:
        raise HTTPException(422, "images: send one or more image files as multipart fields 'images'")
    uploads = [await item.read() for item in files]
    return await call(engine.add, uploads, abandon_on_timeout=False)


@write_router.delete("/api/images/{image_id}", response_model=RemoveResponse, responses=ERRORS,
                     summary="Remove an image by id (needs --allow-writes and the token)")
async def remove_image(image_id: int, request: Request):
    return await call(engine_of(request).remove, image_id, abandon_on_timeout=False)


# With writes off, the write paths say why instead of a bare "Method Not Allowed".
writes_off_router = APIRouter()
_WRITES_OFF = "writes are off on this server (start it with --allow-writes and --token)"


@writes_off_router.post("/api/images", include_in_schema=False)
async def add_images_off():
    raise HTTPException(405, _WRITES_OFF)


@writes_off_router.delete("/api/images/{image_id}", include_in_schema=False)
async def remove_image_off(image_id: str):
    raise HTTPException(405, _WRITES_OFF, headers={"Allow": "GET"})
