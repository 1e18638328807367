"""``similar-images serve``: the search as an HTTP service with a web page.

Modules by job:

* :mod:`.config`: the service's settings (one frozen dataclass).
* :mod:`.limits`: upload size cap (ASGI, while streaming), request time limit, token,
  content sniffing and the pixel cap.
* :mod:`.urls`: URL fetching with address checks before every connection (SSRF).
* :mod:`.batcher`: the micro-batching queue in front of the one model instance.
* :mod:`.engine`: the database, the model and the write path behind the routes.
* :mod:`.stats`: latency percentiles since start.
* :mod:`.app` and :mod:`.routes`: the FastAPI application (thin routes).
* :mod:`.server`: runs it under uvicorn.

Importing ``similar_images.service`` (or its config, limits, urls, batcher, engine)
does not import FastAPI: :func:`.app.create_app` and :func:`.server.serve` do.
"""
