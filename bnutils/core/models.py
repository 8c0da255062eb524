"""The networks of the book, all built from one block, :class:`Layer`.

A :class:`Layer` is one linear map (``nn.Linear`` or ``nn.Conv2d``), its own normalization
(``nn.Identity`` when there is none), a nonlinearity and, in VGG, max-pooling. A :class:`Net` is
a list of them, so "layer i" of [STIM18] Def. 2.1 is ``net.layers[i - 1]`` and its parameters
(weights, bias, gamma, beta) form one group; activations before and after normalization are the
input and output of ``net.layers[i - 1].norm``.

- :class:`MLP`: [IS15] Fig. 1, three hidden layers of 100 sigmoid units, normalization before
  each sigmoid.
- :class:`VGG`: [STIM18] App. A, VGG (Simonyan & Zisserman 2015) for 32x32 inputs.
- :class:`DLN`: [STIM18] App. A, the deep linear network, 25 square 10x10 layers.

Normalization layers come from :func:`bnutils.core.bn.make_norm` (``"bn"``, ``"noisy_bn"``,
``"l1"``, ``"l2"``, ``"linf"``); ``norm_layers`` (1-based layer numbers) restricts them to some
layers, e.g. ``norm_layers=(4,)`` for the public replication's single BN after the 4th conv;
``norm_kw`` goes to the normalization's constructor, and ``norm_kw={"bn_impl": "torch"}`` swaps
in ``torch.nn.BatchNorm1d/2d`` for ``"bn"`` (shown equivalent in the tests). Weights get
Glorot (Xavier) uniform initialisation ([STIM18] App. A), biases zero; a layer followed by a
normalization has no bias (it would be cancelled by the mean subtraction, [IS15] Sec. 3.2).
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from ..infra import validate
from .bn import NORMS as NORM_LAYERS
from .bn import make_norm

NORMS = ("none", *NORM_LAYERS)
BN_IMPLS = ("bnutils", "torch")
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "identity": nn.Identity}

#: VGG configurations of Simonyan & Zisserman (2015), Table 1: channels per conv, "M" = max-pool.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


class Layer(nn.Module):
    """``pool(act(norm(linear(x))))``: one layer of [STIM18] Def. 2.1 with its own normalization."""

    def __init__(self, linear: nn.Linear | nn.Conv2d, norm: nn.Module, act: nn.Module,
                 pool: nn.Module | None = None) -> None:
        super().__init__()
        self.linear, self.norm, self.act = linear, norm, act
        self.pool = pool if pool is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.linear, nn.Linear) and x.dim() > 2:
            x = x.flatten(1)
        return self.pool(self.act(self.norm(self.linear(x))))


class Net(nn.Module):
    """A sequence of :class:`Layer`; ``net.layers[i - 1]`` is layer ``i``."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        glorot_init(self)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def glorot_init(net: nn.Module) -> None:
    """Glorot & Bengio (2010) uniform initialisation of every linear/conv weight; zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _norm(kind: str, linear: nn.Module, width: int, norm_kw: dict[str, Any]) -> nn.Module:
    """The normalization after ``linear``; ``norm_kw["bn_impl"] == "torch"`` picks torch.nn's
    BatchNorm1d/2d for ``"bn"`` (the same numbers, see tests/test_models.py; faster on a GPU)."""
    if kind == "none":
        return nn.Identity()
    kw = dict(norm_kw)
    if kw.pop("bn_impl", "bnutils") == "torch":
        return (nn.BatchNorm2d if isinstance(linear, nn.Conv2d) else nn.BatchNorm1d)(width, **kw)
    return make_norm(kind, width, **kw)


def _check(norm: str, norm_layers: Sequence[int] | None, n_layers: int,
           norm_kw: dict[str, Any] | None = None) -> set[int]:
    """Validate the normalization options; return the 1-based layers that get a normalization."""
    validate.one_of("norm", norm, NORMS)
    impl = (norm_kw or {}).get("bn_impl", "bnutils")
    if impl not in BN_IMPLS or (impl == "torch" and norm != "bn"):
        raise ValueError(f"bn_impl {impl!r} not available for norm {norm!r}; allowed: "
                         f"{', '.join(BN_IMPLS)} ('torch' only with norm='bn')")
    if norm_layers is None:
        return set(range(1, n_layers + 1))
    bad = [i for i in norm_layers if isinstance(i, bool) or not isinstance(i, int)
           or not 1 <= i <= n_layers]
    if bad:
        raise ValueError(f"norm_layers {bad} out of range; allowed: 1..{n_layers}")
    return set(norm_layers)


def _stack(specs: list[tuple[int, int, bool, str, bool]], norm: str, normed: set[int],
           norm_kw: dict[str, Any] | None, bias: bool = True) -> list[Layer]:
    """Layers from (inputs, outputs, is_conv, activation, pool_after) specs, numbered from 1.
    A layer has a bias only with ``bias`` and no normalization after it."""
    layers = []
    for i, (n_in, n_out, conv, act, pool) in enumerate(specs, start=1):
        kind = norm if i in normed else "none"
        has_bias = bias and kind == "none"
        linear = nn.Conv2d(n_in, n_out, 3, padding=1, bias=has_bias) if conv \
            else nn.Linear(n_in, n_out, bias=has_bias)
        layers.append(Layer(linear, _norm(kind, linear, n_out, norm_kw or {}),
                            ACTIVATIONS[act](), nn.MaxPool2d(2) if pool else None))
    return layers


class MLP(Net):
    """Fully connected network of [IS15] Fig. 1: ``hidden`` sigmoid layers, then a linear output.

    Normalization (if any) sits before each hidden nonlinearity; the output layer has none.
    ``norm_layers`` counts hidden layers from 1.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (100, 100, 100),
                 n_classes: int = 10, *, norm: str = "none", act: str = "sigmoid",
                 norm_layers: Sequence[int] | None = None,
                 norm_kw: dict[str, Any] | None = None) -> None:
        validate.one_of("act", act, ACTIVATIONS)
        if not hidden or any(h < 1 for h in hidden) or in_features < 1 or n_classes < 1:
            raise ValueError("in_features, n_classes and every hidden size must be positive")
        normed = _check(norm, norm_layers, len(hidden), norm_kw)
        sizes = [in_features, *hidden]
        layers = _stack([(a, b, False, act, False) for a, b in zip(sizes, sizes[1:])], norm,
                        normed, norm_kw)
        layers.append(Layer(nn.Linear(sizes[-1], n_classes), nn.Identity(), nn.Identity()))
        super().__init__(layers)


class VGG(Net):
    """VGG for 32x32 images: 3x3 convs (padding 1) with ReLU, 2x2 max-pools, then a classifier.

    ``config``: a key of :data:`VGG_CONFIGS` ("A" = VGG-11 with 8 convs, "D" = VGG-16 with 13).
    ``width`` multiplies every channel count (quick runs use e.g. 0.25). ``head``: widths of the
    hidden linear layers of the classifier (each with ReLU and, with ``norm``, its normalization),
    then a linear layer to ``n_classes``. Layers are numbered convs first, so layer #3 is conv 3.
    """

    def __init__(self, config: str = "D", *, width: float = 1.0, n_classes: int = 10,
                 head: Sequence[int] = (512,), in_channels: int = 3, norm: str = "none",
                 norm_layers: Sequence[int] | None = None,
                 norm_kw: dict[str, Any] | None = None) -> None:
        validate.one_of("VGG config", config, VGG_CONFIGS)
        validate.positive_number("width", width)
        spec = VGG_CONFIGS[config]
        specs = []
        c = in_channels
        for j, v in enumerate(spec):
            if v != "M":
                out = max(1, round(v * width))
                specs.append((c, out, True, "relu", spec[j + 1:j + 2] == ["M"]))
                c = out
        head = [max(1, round(h * width)) for h in head]
        # 32x32 after five 2x2 max-pools is 1x1: the classifier sees c features
        specs += [(a, b, False, "relu", False) for a, b in zip([c, *head], head)]
        layers = _stack(specs, norm, _check(norm, norm_layers, len(specs), norm_kw), norm_kw)
        layers.append(Layer(nn.Linear(head[-1] if head else c, n_classes), nn.Identity(),
                            nn.Identity()))
        super().__init__(layers)
        self.config = config

    @property
    def convs(self) -> list[Layer]:
        """The conv layers, in order (13 for config D)."""
        return [m for m in self.layers if isinstance(m.linear, nn.Conv2d)]


class DLN(Net):
    """Deep linear network of [STIM18] App. A: ``depth`` square ``dim x dim`` layers, no bias.

    The output is ``W_depth ... W_1 x``; with ``norm`` a normalization follows every layer
    (``norm_layers`` restricts it; where BN sat is not stated in the paper).
    """

    def __init__(self, depth: int = 25, dim: int = 10, *, norm: str = "none",
                 norm_layers: Sequence[int] | None = None,
                 norm_kw: dict[str, Any] | None = None) -> None:
        validate.positive_int("depth", depth)
        validate.positive_int("dim", dim)
        normed = _check(norm, norm_layers, depth, norm_kw)
        super().__init__(_stack([(dim, dim, False, "identity", False)] * depth, norm, normed,
                                norm_kw, bias=False))
