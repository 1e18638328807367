"""Make torchvision importable beside a CPU build of torch.

PyPI's torchvision wheels are built against PyPI's torch, the CUDA build: their C++
extension (``torchvision/_C.so``) links ``libtorch_cuda.so``, which a CPU build of torch
(the ``2.13.0+cpu`` our machines install) does not have. torchvision then runs without its
C++ operators (``torchvision.ops.nms`` and friends), which we never use, but its
``__init__`` still registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms``
without checking that the operators exist, and the import fails with
``operator torchvision::nms does not exist``. Everything that imports torchvision fails with
it: open_clip (its transforms and model code) and sentence-transformers (through
transformers, which imports torchvision whenever it is installed).

:func:`ensure_torchvision_importable` declares the two operators' schemas (no kernels) when
they are missing, so that import succeeds and torchvision's transforms, which are pure
Python on PIL images, work as usual. With a torchvision whose extension loads (a matching
CUDA torch, or a source build), the operators exist and nothing is declared. Call it
before importing torchvision, open_clip or sentence-transformers.
"""

from __future__ import annotations

import functools

# The schemas torchvision's C++ extension registers (torchvision/csrc/ops/nms.cpp).
_MISSING_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


@functools.cache
def ensure_torchvision_importable():
    """Declare ``torchvision::nms``/``qnms`` if torchvision's extension did not; idempotent.

    Returns:
        The ``torch.library.Library`` holding the declarations (kept alive by the cache, as
        a library's definitions die with it), or None when nothing was missing.
    """
    import importlib.machinery
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    if spec is None or "torchvision" in sys.modules:  # not installed, or already imported
        return None
    import torch

    # Load the extension as torchvision's own import would (a second load of the same file
    # is a no-op): if it loads, the operators are registered and nothing is to be declared.
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (folder / f"_C{suffix}").is_file():
            try:
                torch.ops.load_library(str(folder / f"_C{suffix}"))
                return None
            except OSError:  # linked against libraries this torch does not ship
                break
    library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _MISSING_OPS.items():
        if not hasattr(torch.ops.torchvision, name):
            library.define(schema)
    return library
