"""The JSON shapes of the API (pydantic models: they make the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="What was wrong, in one line.")


class Hit(BaseModel):
    id: int
    name: str
    score: float = Field(description="Cosine similarity, 6 decimals (1.0: the same image).")
    verdict: str | None = Field(description='What the score means for this model: "same photo", "similar" or '
                                            '"unrelated"; null when the model\'s scores were never measured.')
    thumbnail_url: str
    image_url: str


class Query(BaseModel):
    kind: str = Field(description='"upload", "id", "url" or "text"')
    id: int | None = None
    url: str | None = None
    text: str | None = None
    width: int | None = None
    height: int | None = None


class Timings(BaseModel):
    decode_ms: float
    model_ms: float
    search_ms: float
    total_ms: float
    batch_size: int = Field(description="Queries that shared the model call (micro-batching).")


class SearchResponse(BaseModel):
    query: Query
    results: list[Hit]
    no_close_match: bool | None = Field(description="True when even the first result is unrelated (no close match "
                                                    "in this collection); null without verdicts.")
    timings: Timings


class DuplicatesResponse(BaseModel):
    id: int
    threshold: float = Field(description="Lowest cosine shown: the one asked for, or the model's calibrated default.")
    results: list[Hit] = Field(description="Neighbours at or above the threshold, best first; the image itself left out.")


class Health(BaseModel):
    status: str
    count: int
    model: str | None
    text_queries: bool = Field(description="Whether the model has a text tower (CLIP): POST /api/search {\"text\"}.")
    index: str
    dimension: int
    allow_urls: bool
    allow_writes: bool
    max_upload_bytes: int
    max_k: int
    default_k: int


class Percentiles(BaseModel):
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


class Stats(BaseModel):
    count: int
    model: str | None
    index: str
    uptime_s: float
    errors: int
    requests: dict[str, Percentiles]
    mean_batch_size: float | None


class Added(BaseModel):
    id: int | None
    name: str


class Skipped(BaseModel):
    name: str
    error: str


class AddResponse(BaseModel):
    added: list[Added]
    already_present: list[Added]
    skipped: list[Skipped]
    count: int


class RemoveResponse(BaseModel):
    removed: list[str]
    count: int


ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in {
    400: "Bad input (not an image, too many pixels, refused URL).",
    401: "Missing or wrong bearer token.",
    404: "No such image.",
    413: "Request body over the upload cap.",
    415: "Unsupported content type.",
    422: "Malformed parameters.",
    500: "Internal error (details in the server log).",
    502: "A fetched URL failed.",
    503: "Over the request time limit.",
    504: "A fetched URL timed out.",
}.items()}
