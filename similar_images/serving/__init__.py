"""``similar-images serve --engine ray``: the service past one process, on Ray Serve.

The same FastAPI application as the one-process service (routes, limits, token, page),
run by Ray Serve as an ingress deployment with replicas; the index is served by shard
deployments (id ranges), and writes go to one writer deployment.

Modules by job:

* :mod:`.spec`: what to serve and how (one frozen dataclass), checked before Ray starts.
* :mod:`.state`: which state of the database a process holds; picking up writes within a bound.
* :mod:`.shards`: one shard's search over an id range, and the merge of the shards' top-k.
* :mod:`.replica`: the ingress replica's engine: the local model, searches routed to the shards.
* :mod:`.batching`: the ingress's batching on Ray Serve's ``@serve.batch`` (``--batcher serve``).
* :mod:`.deployments`: the Ray Serve deployments (ingress, shard, writer) and the application.
* :mod:`.launch`: start and stop it on a Ray cluster (local or given).
* :mod:`.proxy`: in Ray Serve's HTTP proxy, a request a dead replica held becomes a 503 to retry.

Importing this package does not import Ray: :mod:`.deployments` and :mod:`.launch` do.
"""
