"""Start ``serve --engine ray`` on a Ray cluster (a local one by default) and stop it."""

from __future__ import annotations

import logging
import os
import signal
import time

from similar_images.cluster.session import ray_session
from similar_images.errors import SimilarImagesError
from similar_images.serving.spec import ServingSpec

log = logging.getLogger(__name__)


def start(spec: ServingSpec, *, host: str = "127.0.0.1", port: int = 8000) -> str:
    """Deploy ``spec`` on the Ray this process is connected to; its base URL once every replica is up.

    Raises:
        SimilarImagesError: the cluster has fewer CPUs than the replicas reserve.
    """
    import ray

    have = ray.cluster_resources().get("CPU", 0)
    if spec.cpus_wanted() > have + 1e-9:
        raise SimilarImagesError(
            f"the replicas reserve {spec.cpus_wanted():g} CPUs ({spec.replicas} ingress, {spec.replicas} x "
            f"{spec.shards} shard{'' if spec.shards == 1 else 's'}{', 1 writer' if spec.writer else ''}, "
            f"{spec.cpus_per_replica:g} each), the cluster has {have:g}; lower --cpus-per-replica or --replicas")
    if spec.autoscaling and spec.cpus_wanted(spec.max_replicas) > have + 1e-9:
        log.warning("at %d replicas the application reserves %g CPUs, the cluster has %g now: replicas past "
                    "that wait for CPUs (a cluster with an autoscaler adds nodes)", spec.max_replicas,
                    spec.cpus_wanted(spec.max_replicas), have)
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    deploy(spec)
    return f"http://{host}:{port}"


def deploy(spec: ServingSpec) -> None:
    """Deploy (or replace) the application on the running Ray Serve; returns once every replica is healthy."""
    from ray import serve

    from similar_images.serving.deployments import APP_NAME, build_application

    serve.run(build_application(spec), name=APP_NAME, route_prefix="/")


def stop() -> None:
    """Delete the application and stop Ray Serve (the Ray cluster stays)."""
    from ray import serve

    serve.shutdown()


def serve_on_ray(spec: ServingSpec, *, host: str, port: int, address: str | None = None,
                 on_ready=None) -> None:
    """Serve until Ctrl-C or SIGTERM (the CLI): a local Ray on 127.0.0.1 unless ``address``
    names a cluster. Either signal deletes the application, stops Serve and the local Ray.

    A local Ray's proxy turns requests a dead replica held into 503s (:mod:`.proxy`); a
    cluster's proxy does when its nodes were started with :func:`~.proxy.proxy_environment`."""
    from similar_images.serving.proxy import CALLBACK_VARIABLE, proxy_environment

    if address is None:
        for key, value in proxy_environment().items():  # read by the proxy process Ray starts
            os.environ.setdefault(key, value)
    elif CALLBACK_VARIABLE not in os.environ:
        log.warning("joining a running Ray: its proxy answers requests a dead replica held with 500, unless "
                    "its nodes were started with %s set (docs/scale.md)", proxy_environment())
    with ray_session(address):
        # Ray's driver ends the process at SIGTERM without a word to Serve (containers and
        # process managers stop with SIGTERM): it stops like Ctrl-C instead.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            url = start(spec, host=host, port=port)
            if on_ready is not None:
                on_ready(url)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("stopped by Ctrl-C or SIGTERM")
        finally:
            stop()
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
