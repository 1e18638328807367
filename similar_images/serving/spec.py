"""What ``serve --engine ray`` serves and how: one frozen dataclass, checked before Ray starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from similar_images.service.config import ServiceConfig

BATCHERS = ("micro", "serve")
DEFAULT_MAX_AGE_S = 1.0  # the staleness bound of a replica (docs/scale.md, "Serving on Ray")


@dataclass(frozen=True)
class ServingSpec:
    """The database, the service's settings and the shape of the deployment.

    Attributes:
        vectors: the vectors file (every replica opens it: shared storage on a cluster).
        index: the index file, or None (exact search).
        image_dir: the folder the names are relative to (None: the manifest's).
        config: the one-process service's settings (limits, token, URL rules, batching).
        replicas: replicas of the ingress (the app and the model) and of each shard; with
            ``max_replicas``, the least Ray Serve's autoscaler keeps of each.
        max_replicas: None: ``replicas`` fixed; a number: each deployment autoscales
            between ``replicas`` and ``max_replicas`` on its requests in flight
            (:func:`parse_replicas` reads ``--replicas 1-4``).
        shards: the index split into this many id ranges, each its own deployment.
        ranges: the shards' id ranges ``(start, stop)``, the last one open (``stop`` None)
            so that added rows land in it; made by :func:`shard_ranges` from the count.
        cpus_per_replica: CPUs Ray reserves for each replica (fractions share a core).
        max_age_s: a replica answers from a state at most this old (see :mod:`.state`).
        device: where the query model runs (``auto``, ``cpu``, ``cuda``).
        extractor: a picklable factory of the feature model (tests, custom models);
            None: the model recorded in the database.
        request_timeout_s: how long the ingress waits for a shard's answer.
        batcher: ``micro``: the one-process service's micro-batcher; ``serve``: Ray Serve's
            ``@serve.batch`` (:mod:`.batching`), with the same batch size and wait.
    """

    vectors: str
    index: str | None
    image_dir: str | None
    config: ServiceConfig
    replicas: int = 1
    max_replicas: int | None = None
    shards: int = 1
    ranges: tuple[tuple[int, int | None], ...] = ((0, None),)
    cpus_per_replica: float = 1.0
    max_age_s: float = DEFAULT_MAX_AGE_S
    device: str = "auto"
    extractor: Any = None
    request_timeout_s: float = 30.0
    batcher: str = "micro"

    def __post_init__(self):
        if self.replicas < 1 or self.shards < 1:
            raise ValueError(f"replicas and shards must be at least 1, got {self.replicas} and {self.shards}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas ({self.replicas})")
        if len(self.ranges) != self.shards:
            raise ValueError(f"{self.shards} shards need {self.shards} id ranges, got {len(self.ranges)}")
        if not 0 < self.cpus_per_replica:
            raise ValueError(f"cpus_per_replica must be positive, got {self.cpus_per_replica}")
        if self.batcher not in BATCHERS:
            raise ValueError(f"batcher must be one of {', '.join(BATCHERS)}, got {self.batcher!r}")
        if self.max_age_s < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_age_s must not be negative and request_timeout_s must be positive")

    @property
    def writer(self) -> bool:
        """Whether a writer deployment runs (``--allow-writes``)."""
        return self.config.allow_writes

    @property
    def autoscaling(self) -> bool:
        """Whether the ingress and shard deployments autoscale (``max_replicas`` above ``replicas``)."""
        return self.max_replicas is not None and self.max_replicas > self.replicas

    def describe_replicas(self) -> str:
        """``2`` or ``1-4`` (autoscaling), as ``--replicas`` takes it."""
        return f"{self.replicas}-{self.max_replicas}" if self.autoscaling else str(self.replicas)

    def cpus_wanted(self, replicas: int | None = None) -> float:
        """CPUs the whole application reserves: ingress and shard replicas (``replicas`` of
        each, default the least), and the writer."""
        n = self.replicas if replicas is None else replicas
        return self.cpus_per_replica * (n * (1 + self.shards) + (1 if self.writer else 0))


def parse_replicas(value, name: str = "--replicas") -> tuple[int, int | None]:
    """``--replicas``: ``N`` (fixed) or ``MIN-MAX`` (autoscaling) -> ``(N, None)`` or ``(MIN, MAX)``;
    ``name`` is what the one-line refusal calls the setting.

    Raises:
        ValueError: anything else, in one line that says what is accepted.
    """
    text = str(value).strip()
    low, dash, high = text.partition("-")
    try:
        least, most = int(low), int(high) if dash else None
    except ValueError:
        least = most = None
    if least is None or least < 1 or (dash and (most is None or most < least)):
        raise ValueError(f"{name}: N or MIN-MAX with 1 <= MIN <= MAX (e.g. 2 or 1-4), got {text!r}")
    return least, (most if most is not None and most > least else None)


def shard_ranges(count: int, shards: int) -> tuple[tuple[int, int | None], ...]:
    """``shards`` contiguous id ranges over ``0..count-1`` of (nearly) equal size; the last is open.

    Ids are row numbers, so a range is a slice of the vectors file and of the index's ids;
    rows added later take the next ids, in the last range.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards > max(count, 1):
        raise ValueError(f"{shards} shards for {count} images: at most one shard an image")
    cuts = [count * i // shards for i in range(shards + 1)]
    return tuple((cuts[i], cuts[i + 1] if i < shards - 1 else None) for i in range(shards))
