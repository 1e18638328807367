"""Descriptor recipes: how a network's last convolutional map becomes one image vector.

The same networks, no training; retrieval-style pooling of the last convolutional map
(EfficientNet-Lite0: ``(n, 1280, 7, 7)`` at 224 x 224; VGG16: ``block5_conv3``,
``(n, 512, 14, 14)``, before its last max-pool):

* ``avg``: global average pooling (EfficientNet-Lite0's classic vector; VGG16's classic
  vector is ``fc2`` and stays its default);
* ``gem``: generalised mean, ``(mean x^p)^(1/p)`` over the map (Radenović et al., TPAMI
  2018); ``p=1`` is average pooling, large ``p`` tends to max pooling; ``p=3`` is the
  paper's off-the-shelf choice and our default;
* ``max``: global max pooling (MAC);
* ``rmac``: regional max pooling (Tolias et al., ICLR 2016): the max over square regions
  at :data:`RMAC_LEVELS` sizes (:func:`rmac_regions`), each L2-normalised, summed;
* ``scales``: the image is also resized by each factor (in the model, bilinear with
  antialiasing) and the L2-normalised vectors of the scales are summed. The decoded image
  is the model's input size, so a scale above 1 upsamples it (adds no detail).

The pooling runs inside the network module (:class:`PooledNetwork`), so every runtime
converts, quantises and checks the recipe's own vectors (see ``docs/descriptors.md``).
PCA-whitening (``whiten``) is fitted on the database afterwards (:mod:`.whitening`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

POOLINGS = ("avg", "gem", "max", "rmac")
DEFAULT_GEM_P = 3.0
RMAC_LEVELS = 3
RMAC_OVERLAP = 0.4  # the paper's overlap of neighbouring regions (only used on non-square maps)
GEM_EPS = 1e-6  # GeM clamps the map here: x^p of a negative or zero value has no useful root


@dataclass(frozen=True)
class Descriptor:
    """A descriptor recipe.

    Attributes:
        pooling: one of :data:`POOLINGS`.
        gem_p: GeM's exponent (``pooling="gem"`` only).
        scales: image scales, each a factor of the model's input size; vectors summed.
        whiten: PCA-whitening fitted on the database (applied after pooling).
    """

    pooling: str = "avg"
    gem_p: float = DEFAULT_GEM_P
    scales: tuple[float, ...] = (1.0,)
    whiten: bool = False

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of: {', '.join(POOLINGS)}")
        if not (0 < float(self.gem_p) <= 100):
            raise ValueError(f"GeM's p must be in (0, 100], got {self.gem_p}")
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(not (0.25 <= s <= 2.0) for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct factors in [0.25, 2], at least one; got {list(self.scales)}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "gem_p", float(self.gem_p))
        object.__setattr__(self, "whiten", bool(self.whiten))

    @property
    def pooled_network(self) -> bool:
        """Whether the network's classic output is replaced (any pooling but one-scale ``avg``)."""
        return self.pooling != "avg" or self.scales != (1.0,)

    @property
    def classic(self) -> bool:
        """The model's original vector: nothing recorded, nothing changed."""
        return not self.pooled_network and not self.whiten

    def describe(self) -> dict[str, Any] | None:
        """What ``describe()["descriptor"]`` records; None for the classic vector, so
        databases made before recipes existed describe themselves as before."""
        if self.classic:
            return None
        out: dict[str, Any] = {"pooling": self.pooling}
        if self.pooling == "gem":
            out["gem_p"] = self.gem_p
        if self.pooling == "rmac":
            out["rmac_levels"] = RMAC_LEVELS
        return {**out, "scales": list(self.scales), "whiten": self.whiten}

    @classmethod
    def from_description(cls, described: dict[str, Any] | None) -> Descriptor:
        """The recipe a ``describe()["descriptor"]`` records (None: the classic vector)."""
        if not described:
            return cls()
        return cls(pooling=described.get("pooling", "avg"), gem_p=described.get("gem_p", DEFAULT_GEM_P),
                   scales=tuple(described.get("scales", (1.0,))), whiten=bool(described.get("whiten", False)))

    @property
    def label(self) -> str:
        """Short name for tables: ``avg``, ``gem3``, ``rmac+s1,0.707+w``."""
        text = f"gem{self.gem_p:g}" if self.pooling == "gem" else self.pooling
        if self.scales != (1.0,):
            text += "+s" + ",".join(f"{s:g}" for s in self.scales)
        return text + ("+w" if self.whiten else "")


def parse_scales(text: str) -> tuple[float, ...]:
    """``"1,0.707"`` -> ``(1.0, 0.707)``; a ValueError names the bad item."""
    try:
        return tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise ValueError(f"scales: expected numbers separated by commas, got {text!r}") from None


def rmac_regions(height: int, width: int, levels: int = RMAC_LEVELS) -> list[tuple[int, int, int]]:
    """R-MAC's square regions of a ``height x width`` map: ``(top, left, side)``.

    Level ``l`` (1..``levels``) has squares of side ``floor(2 m / (l + 1))`` (``m`` the short
    side), ``l`` of them along the short side and, on a non-square map, as many more along
    the long side as give about :data:`RMAC_OVERLAP` overlap (Tolias et al.), spread
    evenly from edge to edge. A 7 x 7 map: one 7 x 7, four 4 x 4, nine 3 x 3 (14 regions).
    """
    short, long_ = min(height, width), max(height, width)
    extra = 0
    if long_ > short:  # regions along the long side beyond l: the count whose overlap is closest to 0.4
        steps = range(2, 8)
        extra = 1 + min(range(len(steps)), key=lambda i: abs((short ** 2 - short * (long_ - short) / (steps[i] - 1))
                                                            / short ** 2 - RMAC_OVERLAP))
    out = []
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        if side < 1:
            continue
        along_h = level + (extra if height > width else 0)
        along_w = level + (extra if width > height else 0)
        for top in _starts(height, side, along_h):
            out += [(top, left, side) for left in _starts(width, side, along_w)]
    return out


def _starts(length: int, side: int, count: int) -> list[int]:
    """``count`` start offsets of windows of ``side`` spread from 0 to ``length - side``."""
    if count <= 1:
        return [max(0, (length - side) // 2)] if count == 1 and length > side else [0]
    step = (length - side) / (count - 1)
    return sorted({math.floor(i * step) for i in range(count)})


def pool(maps, descriptor: Descriptor):
    """``(n, c, h, w)`` torch map -> ``(n, c)`` per :attr:`Descriptor.pooling`."""
    import torch

    if descriptor.pooling == "avg":
        return maps.mean(dim=(2, 3))
    if descriptor.pooling == "max":
        return maps.amax(dim=(2, 3))
    if descriptor.pooling == "gem":
        p = descriptor.gem_p
        return maps.clamp(min=GEM_EPS).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
    total = None
    for top, left, side in rmac_regions(int(maps.shape[2]), int(maps.shape[3])):
        region = maps[:, :, top:top + side, left:left + side].amax(dim=(2, 3))  # (n, c)
        region = torch.nn.functional.normalize(region, dim=1, eps=GEM_EPS)
        total = region if total is None else total + region
    return total


def _pooled_module():
    import torch

    class PooledNetwork(torch.nn.Module):
        """``backbone`` (float input -> ``(n, c, h, w)`` map) followed by a recipe's pooling,
        over the recipe's scales: ``(n, 3, H, W)`` float32 (NCHW) -> ``(n, c)``."""

        def __init__(self, backbone, descriptor: Descriptor, features: str):
            super().__init__()
            self.backbone = backbone
            self.descriptor = descriptor
            self.features = features

        def _map(self, x):
            return getattr(self.backbone, self.features)(x)

        def forward(self, x):
            functional = torch.nn.functional
            if self.descriptor.scales == (1.0,):
                return pool(self._map(x), self.descriptor)
            h, w = int(x.shape[2]), int(x.shape[3])
            total = None
            for s in self.descriptor.scales:
                scaled = x if s == 1.0 else functional.interpolate(
                    x, size=(max(32, round(h * s)), max(32, round(w * s))), mode="bilinear",
                    align_corners=False, antialias=s < 1.0)
                vector = functional.normalize(pool(self._map(scaled), self.descriptor), dim=1, eps=GEM_EPS)
                total = vector if total is None else total + vector
            return total

    return PooledNetwork


def pooled_network(backbone, descriptor: Descriptor, features: str = "forward"):
    """A torch module, in eval mode: :func:`pool` of the map ``backbone.<features>(x)`` gives,
    over ``descriptor``'s scales."""
    return _pooled_module()(backbone, descriptor, features).eval()
