"""Extraction and index build on a Ray cluster: the local code, scheduled elsewhere.

* :mod:`.session`: start a local Ray or connect to a cluster (``--address``).
* :mod:`.recipes`: how an actor rebuilds the driver's feature model (INT8 shipped, not recalibrated).
* :mod:`.ray_extract`: ``extract --engine ray``: decode in CPU tasks, embed in an actor pool,
  shards in ``<output>.partial/``, merged through the same atomic commit as the local engine.
* :mod:`.ray_build`: ``build --engine ray``: train once on the driver, encode shards of the
  memory-mapped vectors in parallel tasks, merge the inverted lists.

Everything here imports ``ray`` inside the functions that need it.
"""
