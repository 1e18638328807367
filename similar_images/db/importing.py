"""A database from vectors computed elsewhere: a ``.npy`` array and a names file, one name a line.

This is how users bring another tool's embeddings (or a cluster's output), and how the
benchmarks make databases of millions of rows without millions of images. Everything is
checked before anything is written, reading the array by chunks through a memory map
(10,000,000 x 1280 rows are never in memory at once, nor twice):

* the array: a ``.npy`` file of 2 dimensions and a floating dtype (float16, float32 or
  float64; integers, complex or object arrays are refused), every value finite;
* the names: UTF-8, one a line, none empty, none twice (under the database's name rule,
  so ``a//b.jpg`` and ``a/b.jpg`` are one path), exactly one per row.

Each fault is one line naming the file, and the row or line, and the output is not
touched. The database is then written as any extraction writes one
(:func:`vectors.save_vectors`: the journal, the catalog, a new generation); build its
index with ``similar-images build``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db import catalog
from similar_images.db.vectors import NAME_RULES, STORES, default_store, save_vectors
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path

log = logging.getLogger(__name__)

IMPORT_DTYPES = (np.float16, np.float32, np.float64)
CHECK_ROWS = 65_536  # rows read at a time by the checks
NO_MODEL = "none"  # vector and id queries only


def no_model(dimension: int) -> dict[str, Any]:
    """The model description of imported vectors whose model this program cannot run."""
    return {"name": NO_MODEL, "dim": int(dimension), "source": "import"}


def open_source(path: str | os.PathLike) -> np.ndarray:
    """The array of ``path`` as a read-only memory map ``(n, d)``, checked for shape and dtype."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseError(f"{path}: no such vectors file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays ask for pickles; a bad header is a ValueError too
        raise DatabaseError(f"{path}: not a plain .npy array ({str(exc).splitlines()[0]}); refused, nothing was "
                            "written") from None
    except (OSError, EOFError) as exc:
        raise DatabaseError(f"{path}: cannot read it as a .npy array ({exc}); refused, nothing was written") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise DatabaseError(f"{path}: an .npz archive, not one .npy array; refused, nothing was written")
    if array.dtype.type not in IMPORT_DTYPES:
        raise DatabaseError(f"{path}: holds {array.dtype} values; import takes float16, float32 or float64 vectors "
                            "(convert with numpy's astype); refused, nothing was written")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DatabaseError(f"{path}: an array of shape {array.shape}; import takes a 2-d array of rows "
                            "(n vectors x dimension), at least one of each; refused, nothing was written")
    return array


def read_names(path: str | os.PathLike, rule: str) -> list[str]:
    """The names of ``path``, one a line (``\\n`` or ``\\r\\n``), checked: UTF-8, not empty, each once."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot read the names file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatabaseError(f"{path}: line {line} is not UTF-8; refused, nothing was written") from None
    names = text.split("\n")
    if names and names[-1] == "":
        names.pop()  # the last line's end
    names = [n[:-1] if n.endswith("\r") else n for n in names]
    seen: dict[str, int] = {}
    for line, name in enumerate(names, start=1):
        if not name.strip():
            raise DatabaseError(f"{path}: line {line} is empty; every row needs a name; refused, nothing was written")
        key = catalog.item_key(rule, name)
        first = seen.setdefault(key, line)
        if first != line:
            raise DatabaseError(f"{path}: line {line} ({name!r}) names the same item as line {first}; names must be "
                                "unique; refused, nothing was written")
    return names


def check_rows(vectors: np.ndarray, where: Path, *, store: str = "float32", show_progress: bool = False) -> None:
    """Every value of ``vectors`` finite, and within the range of the ``store``'s dtype
    (float16: 65,504; float32 from float64 rows), read by chunks; the first bad row is named."""
    from tqdm.auto import tqdm

    n = len(vectors)
    kept = STORES[store]
    limit = float(np.finfo(kept).max)
    hint = "; import it with --store float32" if store == "float16" else ""
    with tqdm(total=n, unit="row", desc="checking", disable=not show_progress) as bar:
        for start in range(0, n, CHECK_ROWS):
            block = np.asarray(vectors[start:start + CHECK_ROWS])  # (c, d) as stored
            finite = np.isfinite(block).all(axis=1)  # (c,)
            if not finite.all():
                raise DatabaseError(f"{where}: row {start + int(np.argmin(finite))} holds a non-finite value (NaN or "
                                    "infinity); refused, nothing was written")
            fits = (np.abs(block) <= limit).all(axis=1) if block.dtype.itemsize > kept.itemsize else finite
            if not fits.all():
                raise DatabaseError(f"{where}: row {start + int(np.argmin(fits))} holds a value beyond {kept}'s "
                                    f"range ({limit:,.6g}){hint}; refused, nothing was written")
            bar.update(len(block))


def check_output(output: Path) -> None:
    """Refuse to import over anything: the vectors file, its manifest or its catalog."""
    for path in (output, manifest_path(output), catalog.catalog_path(output)):
        if path.exists():
            raise FileExistsError(f"{path} already exists; import makes a new database (choose another -o, or "
                                  "delete the old database's files first)")


def import_vectors(vectors: str | os.PathLike, names: str | os.PathLike, output: str | os.PathLike, *,
                   model: dict[str, Any] | None = None, image_dir: str | os.PathLike | None = None,
                   name_rule: str = "path", store: str | None = None, show_progress: bool = False) -> dict[str, Any]:
    """Create the database ``output`` (a vectors file) from the array ``vectors`` and the names file ``names``.

    Args:
        vectors: a ``.npy`` file ``(n, d)`` of float16, float32 or float64 (memory-mapped, read by chunks).
        names: a UTF-8 text file of ``n`` names, one a line, in row order.
        output: the new database's vectors file (``.npy``); it must not exist.
        model: the model that made the vectors (a ``describe()``, its ``dim`` must be ``d``);
            ``None``: no model (:func:`no_model`): queries by vector or by id only.
        image_dir: the folder the names are relative to (``name_rule="path"``), recorded.
        name_rule: ``"path"`` (image files) or ``"text"`` (names kept as exact strings).
        store: keep the rows as ``"float32"`` or ``"float16"``; None: :func:`vectors.default_store`.

    Returns:
        The vectors manifest written (with ``names``).

    Raises:
        DatabaseError: a bad array or names file (one line; nothing written).
        FileExistsError: ``output`` (or its manifest or catalog) exists.
        ValueError: a bad ``name_rule``, or a model of another dimension.
    """
    if name_rule not in NAME_RULES:
        raise ValueError(f"unknown name rule {name_rule!r}; choose one of: {', '.join(NAME_RULES)}")
    if store is not None and store not in STORES:
        raise ValueError(f"unknown store {store!r}; choose one of: {', '.join(STORES)}")
    source, output = Path(vectors), Path(output)
    check_output(output)
    array = open_source(source)  # (n, d) memory map
    n, d = array.shape
    model = no_model(d) if model is None else model
    if int(model.get("dim", d)) != d:
        raise ValueError(f"{source}: vectors of dimension {d}, but the model {model.get('name', '?')} makes "
                         f"{model.get('dim')}; refused, nothing was written")
    listed = read_names(names, name_rule)
    if len(listed) != n:
        raise DatabaseError(f"{names}: {len(listed):,} names for the {n:,} rows of {source}; one name a row, in row "
                            "order; refused, nothing was written")
    store = store or default_store(n, d)
    check_rows(array, source, store=store, show_progress=show_progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {"model": model, "names": listed, "name_rule": name_rule, "store": store,
                              "imported_from": {"vectors": str(source), "dtype": str(array.dtype),
                                                "names": str(names)}}
    if image_dir is not None:
        fields["image_dir"] = _recorded_dir(Path(image_dir), output)
    log.info("importing %d x %d %s vectors from %s into %s (%s store)", n, d, array.dtype, source, output,
             fields["store"])
    return save_vectors(output, array, fields)


def _recorded_dir(image_dir: Path, output: Path) -> str:
    """The image folder relative to the database's folder when inside it (a moved database
    still finds it), else absolute; as extraction records it."""
    images, home = Path(os.path.abspath(image_dir)), Path(os.path.abspath(output)).parent
    if images == home or home in images.parents:
        return Path(os.path.relpath(images, home)).as_posix()
    return str(images)
