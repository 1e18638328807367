"""The Ray Serve deployments: ingress (the app), shards (the index), writer (the writes).

::

    HTTP ──► Ray Serve proxy ──► ingress replicas (x R): the one-process app, the model
                                    │ search: vectors + state token, to every shard
                                    ├──► shard-0 replicas (x R): ids 0..n/S-1
                                    ├──► shard-1 replicas (x R): ids n/S..  (added rows too)
                                    │ add / remove
                                    └──► writer (x 1): the one-process write path

A shard replica answers only for the state the ingress asked for (it keeps its current
state and the one before, and looks at the disk when asked for one it does not hold), so
ids and names always come from the same state. A shard replica that dies (or is over its
time) makes the ingress answer 503 with ``Retry-After``: Ray Serve starts a new one. The
requests a dead ingress replica held are answered 503 by the proxy (:mod:`.proxy`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from starlette.exceptions import HTTPException

from similar_images.db.database import Database
from similar_images.search import SimilarImages
from similar_images.service.engine import Engine
from similar_images.serving.replica import ReplicaEngine, index_label, open_routed
from similar_images.serving.shards import ShardSearcher, merge
from similar_images.serving.spec import ServingSpec
from similar_images.serving.state import DiskState, FreshMiddleware, Freshness, state_of

log = logging.getLogger(__name__)

APP_NAME = "similar-images"
STATES_KEPT = 2  # a shard answers for its newest state and the one before (ingress replicas catch up)
# A loaded machine is slow, not broken: Ray Serve's default 30 s health check would kill
# replicas that are busy starting (docs/scale.md, "A busy machine").
REPLICA_OPTIONS = {"health_check_period_s": 10, "health_check_timeout_s": 120, "graceful_shutdown_timeout_s": 5}
UNAVAILABLE = (RayActorError, BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError, TimeoutError)
TARGET_ONGOING = 2  # autoscaling: requests in flight a replica aims at (Ray Serve's default, written down)
RETRY = "a search replica is unavailable (it is being replaced); retry in a moment"


def _extractor(spec: ServingSpec):
    return spec.extractor() if spec.extractor is not None else None


def _answer(response, timeout_s: float):
    """The result of a call to another deployment; a replica that is gone becomes a 503 to retry."""
    try:
        return response.result(timeout_s=timeout_s)
    except UNAVAILABLE as exc:
        log.warning("a replica did not answer (%s): 503", type(exc).__name__)
        raise HTTPException(503, RETRY, headers={"Retry-After": "1"}) from None


class Router:
    """Fans a search out to every shard deployment and merges their exact top-k."""

    def __init__(self, shards: list, timeout_s: float):
        self.shards, self.timeout_s = shards, timeout_s

    def __call__(self, queries: np.ndarray, k: int, state, rerank: bool):
        pending = [shard.search.remote(queries, k, state, rerank) for shard in self.shards]  # all at once
        parts = []
        for response in pending:
            answer = _answer(response, self.timeout_s)
            if answer[0] != "ok":  # the shard moved past this replica's state: rare, between two writes
                raise HTTPException(503, "the database changed while answering; retry", headers={"Retry-After": "1"})
            parts.append(answer[1:])
        return merge(parts, k)


class Forward:
    """Sends a write to the writer deployment; its client errors come back as the same HTTP errors."""

    def __init__(self, writer, timeout_s: float):
        self.writer, self.timeout_s = writer, timeout_s

    def __call__(self, operation: str, argument) -> dict:
        answer = _answer(self.writer.write.remote(operation, argument), self.timeout_s)
        if "error" in answer:
            status, message = answer["error"]
            raise HTTPException(status, message)
        return answer["ok"]


@serve.ingress()
class Ingress:
    """The one-process service's application, its engine routed (:mod:`.replica`)."""

    def __init__(self, spec: ServingSpec, shards: list, writer=None):
        self.engine = ingress_engine(spec, shards, writer)

    def __serve_build_asgi_app__(self):
        return ingress_app(self.engine, served_by=serve.get_replica_context().replica_id.unique_id)


def ingress_engine(spec: ServingSpec, shards: list, writer=None) -> ReplicaEngine:
    """An ingress replica's engine: searches to the ``shards`` handles, writes to the ``writer`` handle."""
    route = Router(shards, spec.request_timeout_s)
    db = open_routed(spec.vectors, spec.image_dir, route, extractor=_extractor(spec), device=spec.device)
    write = Forward(writer, spec.request_timeout_s) if writer is not None else None
    engine = ReplicaEngine(db, spec.config, label=index_label(spec.index), write=write, max_age_s=spec.max_age_s)
    if spec.batcher == "serve":
        from similar_images.serving.batching import ServeBatcher

        engine.batcher = ServeBatcher(engine.run_batch, max_batch=spec.config.batch_size,
                                      max_wait_s=spec.config.batch_wait_ms / 1000)
    return engine


def ingress_app(engine: ReplicaEngine, *, served_by: str | None = None):
    """The one-process service's application over ``engine``, its state kept fresh; each
    response names its replica in ``X-Served-By`` (logs, tests, load balancer checks)."""
    from similar_images.service.app import create_app

    app = create_app(engine)  # warms the model in its lifespan, before the replica takes requests
    app.add_middleware(FreshMiddleware, freshness=engine.freshness)
    if served_by:
        app.add_middleware(ServedBy, name=served_by)
    return app


class ServedBy:
    """ASGI middleware: adds ``X-Served-By: <replica>`` to every response."""

    def __init__(self, app, name: str):
        self.app, self.header = app, (b"x-served-by", name.encode("ascii", "replace"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_named(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_named)


class Shard:
    """One id range of the index (:class:`~similar_images.serving.shards.ShardSearcher`)."""

    def __init__(self, spec: ServingSpec, shard: int):
        self.spec, (self.start, self.stop) = spec, spec.ranges[shard]
        self.states: OrderedDict = OrderedDict()  # state token -> ShardSearcher, oldest first
        self.disk = DiskState(spec.vectors)
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        db = Database.open(self.spec.vectors, self.spec.index)
        self.states[state_of(db)] = ShardSearcher(db, self.start, self.stop)
        while len(self.states) > STATES_KEPT:
            self.states.popitem(last=False)

    def search(self, queries: np.ndarray, k: int, state, rerank: bool = True):
        """``("ok", scores, ids)`` for ``state``, or ``("stale", held states)`` if it is not on disk any more."""
        state = tuple(state)
        if state not in self.states:
            with self._lock:
                if state not in self.states and self.disk.read() not in self.states:
                    self._open()  # the ingress saw a newer state: open it
        searcher = self.states.get(state)
        if searcher is None:
            return ("stale", list(self.states))
        return ("ok", *searcher.search(queries, k, rerank=rerank))


class Writer:
    """The one writer: the one-process service's write path (``Engine.add`` / ``remove``)."""

    def __init__(self, spec: ServingSpec):
        db = SimilarImages.open(spec.vectors, spec.index, image_dir=spec.image_dir, extractor=_extractor(spec),
                                device=spec.device)
        self.engine = Engine(db, spec.config)
        # Before each write, the state on disk: another writer (a sync, `similar-images add` or
        # `compact` on the shared folder) may have committed, and an id means what it means there.
        self.freshness = Freshness(spec.vectors, state_of(db.database), self._reopen, max_age_s=0)

    def _reopen(self):
        self.engine.refresh()
        return state_of(self.engine.db.database)

    def write(self, operation: str, argument) -> dict:
        from similar_images.service.routes import error_status

        try:
            self.freshness.check(force=True)
            body = self.engine.add(argument) if operation == "add" else self.engine.remove(argument)
        except Exception as exc:  # noqa: BLE001 - the client's errors go back as statuses; the rest is logged
            status = error_status(exc)
            if status is None:
                log.exception("%s failed", operation)
                status = (500, "internal error (see the server log)")
            return {"error": status}
        return {"ok": body}


def build_application(spec: ServingSpec):
    """The bound Ray Serve application: ingress, ``spec.shards`` shard deployments, the writer."""
    options = {"ray_actor_options": {"num_cpus": spec.cpus_per_replica}, **REPLICA_OPTIONS}
    scaled = {**options, **scaling(spec)}
    shards = [serve.deployment(Shard, name=f"shard-{i}", **scaled).bind(spec, i) for i in range(spec.shards)]
    writer = (serve.deployment(Writer, name="writer", num_replicas=1, max_ongoing_requests=4, **options).bind(spec)
              if spec.writer else None)
    return serve.deployment(Ingress, name="ingress", **scaled).bind(spec, shards, writer)


def scaling(spec: ServingSpec) -> dict:
    """The ingress's and each shard's replica count: fixed, or Ray Serve's autoscaler between
    ``spec.replicas`` and ``spec.max_replicas``, on Ray Serve's defaults otherwise (a replica
    added when its deployment averages more than 2 requests in flight a replica for 30 s,
    one removed after 10 min below it)."""
    if not spec.autoscaling:
        return {"num_replicas": spec.replicas}
    return {"autoscaling_config": {"min_replicas": spec.replicas, "max_replicas": spec.max_replicas,
                                   "initial_replicas": spec.replicas, "target_ongoing_requests": TARGET_ONGOING}}


def app_builder(args: dict):
    """Ray Serve's application builder for a config file or KubeRay's RayService
    (``import_path: similar_images.serving.deployments:app_builder``, docs/scale.md).

    ``args``: ``vectors`` (required), ``index``, ``image_dir``, ``replicas`` (``N`` or
    ``MIN-MAX``: autoscaling), ``shards``,
    ``cpus_per_replica``, ``max_staleness``, ``allow_writes``; the token comes from the
    environment (``SIMILAR_IMAGES_TOKEN``, a Kubernetes secret), never from the file.
    """
    import os

    from similar_images.service.config import ServiceConfig
    from similar_images.serving.spec import DEFAULT_MAX_AGE_S, parse_replicas, shard_ranges

    if "vectors" not in args:
        raise ValueError("app_builder: args.vectors (the vectors file on the shared volume) is required")
    shards = int(args.get("shards", 1))
    count = Database.open(args["vectors"], None, trust=True).id_count
    least, most = parse_replicas(args.get("replicas", 1), "args.replicas")
    config = ServiceConfig(token=os.environ.get("SIMILAR_IMAGES_TOKEN") or None,
                           allow_writes=str(args.get("allow_writes", "false")).lower() == "true")
    spec = ServingSpec(str(args["vectors"]), args.get("index"), args.get("image_dir"), config,
                       replicas=least, max_replicas=most, shards=shards, ranges=shard_ranges(count, shards),
                       cpus_per_replica=float(args.get("cpus_per_replica", 1.0)),
                       max_age_s=float(args.get("max_staleness", DEFAULT_MAX_AGE_S)))
    return build_application(spec)
