"""Generic file I/O below every other layer: atomic writes, JSON, checksums, file lists.

The storage core (``db/``), the models, the demo and the duplicate finder all write files
the same crash-safe way; this folder sits below all of them so a model need not import
the storage core to write its cache.
"""
