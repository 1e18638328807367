"""Shared fixtures. Test data (images, vectors) is generated here, never committed."""

from __future__ import annotations

import os

# Keep TensorFlow quiet and deterministic in tests; set before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
