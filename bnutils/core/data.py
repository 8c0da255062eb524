"""The data sets of the book, as tensors that live on the training device.

- Digits for [IS15] Fig. 1: MNIST (28x28) when it can be found, else scikit-learn's 8x8 digits.
- CIFAR-10 for [STIM18] Sec. 2/3 (VGG), kept as uint8 and standardised per batch on the device.
- The synthetic regression data of [STIM18] App. A for the deep linear network (DLN).

Every loader returns a :class:`Data`; ``data.name`` says which data set actually ran.
"""
from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..infra import cache, validate

DIGITS = ("auto", "mnist", "digits")


@dataclass(frozen=True)
class Data:
    """Train and test tensors of one data set.

    ``x`` is float (flat features) or uint8 (``N x C x H x W`` images); ``y`` is int64 class labels
    or float regression targets. For uint8 images, :meth:`inputs` maps a batch to floats
    standardised with the training set's per-channel ``mean`` and ``std``.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...] = ()
    mean: Tensor | None = None
    std: Tensor | None = None

    def to(self, device: torch.device | str) -> "Data":
        """A copy with every tensor on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, x_train=move(self.x_train), y_train=move(self.y_train),
                       x_test=move(self.x_test), y_test=move(self.y_test),
                       mean=move(self.mean), std=move(self.std))

    def inputs(self, x: Tensor) -> Tensor:
        """A batch as the network's float input (uint8 images are scaled and standardised)."""
        if x.dtype != torch.uint8:
            return x
        x = x.float().div_(255)
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def in_features(self) -> int:
        """Input size of a fully connected network: the number of features per example."""
        return int(np.prod(self.x_train.shape[1:]))

    def __repr__(self) -> str:
        return (f"Data({self.name!r}, train={tuple(self.x_train.shape)}, "
                f"test={tuple(self.x_test.shape)}, classes={self.n_classes})")


def data_root() -> Path:
    """Where downloaded data sets live: ``$BNUTILS_DATA`` if it names a folder, else the cache."""
    env = os.environ.get("BNUTILS_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    return cache.cache_dir() / "data"


# --------------------------------------------------------------------------------------------
# Digits ([IS15] Fig. 1)
# --------------------------------------------------------------------------------------------


def load_digits_data(name: str = "auto", *, root: str | Path | None = None,
                     download: bool | None = None) -> Data:
    """Hand-written digits for the [IS15] Fig. 1 experiment, flattened to float vectors in [0, 1].

    ``"mnist"``: torchvision's MNIST (60,000 / 10,000 images of 28x28) from ``root`` (default:
    :func:`data_root`); a download is tried only where a network is reachable.
    ``"digits"``: scikit-learn's 1,797 8x8 digits, split 75/25, stratified and deterministic.
    ``"auto"``: MNIST if it can be had, else the 8x8 digits.
    """
    validate.one_of("digits data set", name, DIGITS)
    if name == "digits":
        return _sklearn_digits()
    try:
        return _mnist(Path(root) if root else data_root(), download)
    except RuntimeError:
        if name == "mnist":
            raise
        return _sklearn_digits()


def _network_reachable(host: str, timeout: float = 1.0) -> bool:
    import socket
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _mnist(root: Path, download: bool | None) -> Data:
    from torchvision.datasets import MNIST

    def both(download: bool = False) -> list[MNIST]:
        return [MNIST(str(root), train=train, download=download) for train in (True, False)]

    try:
        train, test = both()
    except Exception as missing:  # download only where a network is reachable
        if download is None:
            download = _network_reachable("ossci-datasets.s3.amazonaws.com")
        try:
            if not download:
                raise missing
            train, test = both(download=True)
        except Exception as e:
            raise RuntimeError(
                f"MNIST is not available under {root} ({e}). Provide it in one of these ways: "
                "(1) put torchvision's MNIST folder (MNIST/raw/*-ubyte) under $BNUTILS_DATA or "
                "pass root=...; (2) run once with internet access (torchvision downloads it into "
                "the cache); (3) use dataset='digits' (scikit-learn's 8x8 digits).") from e
    flat = lambda d: d.data.reshape(len(d.data), -1).float().div_(255)  # noqa: E731
    return Data("mnist", flat(train), train.targets.long(), flat(test), test.targets.long(),
                classes=tuple(str(i) for i in range(10)))


def _sklearn_digits(test_fraction: float = 0.25) -> Data:
    """scikit-learn's 8x8 digits (pixel values 0..16 scaled to [0, 1]), stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=test_fraction,
                                              stratify=y, random_state=0)
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    i = lambda a: torch.as_tensor(a, dtype=torch.int64)  # noqa: E731
    return Data("digits", f(x_tr), i(y_tr), f(x_te), i(y_te),
                classes=tuple(str(k) for k in range(10)))


# --------------------------------------------------------------------------------------------
# CIFAR-10 ([STIM18] Sec. 2, App. A)
# --------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")
DECODER_VERSION = 1  # part of the decoded cache's key: bump it when decoding changes
HOW_TO_PROVIDE_CIFAR = (
    "Provide CIFAR-10 in one of three ways, via load_cifar10(path) or the environment variable "
    "BNUTILS_DATA: (1) a torchvision CIFAR-10 root (the folder holding cifar-10-batches-py); "
    "(2) an image-folder tree train/<class>/*.jpg and test/<class>/*.jpg (one extra top folder "
    "is fine); (3) a zip of such a tree, e.g. ../shared/data/cifar10-jpeg.zip. Without these, "
    "torchvision downloads it into the cache folder where a network is reachable.")


def load_cifar10(path: str | Path | None = None, *, download: bool | None = None) -> Data:
    """CIFAR-10 (50,000 train / 10,000 test 32x32 RGB images) as uint8 ``N x 3 x 32 x 32``.

    Looks, in order, at ``path`` or else ``$BNUTILS_DATA`` (a torchvision root, an image-folder
    tree or a zip of one), the default cache folder, then torchvision's download (tried only
    where a network is reachable, or with ``download=True``). Images are decoded once and cached
    with a checksum in :func:`bnutils.infra.cache.cache_dir`: a later load reads the cache (well
    under a second), and a corrupted or truncated cache entry is rebuilt. ``mean``/``std`` are the
    training set's per-channel statistics, for :meth:`Data.inputs`. Raises RuntimeError listing
    the ways to provide the data when none works.
    """
    if path is not None:
        if _cifar_kind(Path(path)) is None:
            _explain_unusable(Path(path))
            raise RuntimeError(f"{path} is not a CIFAR-10 source. {HOW_TO_PROVIDE_CIFAR}")
        return _cached_cifar(Path(path))
    env = os.environ.get("BNUTILS_DATA")
    sources = ([Path(env)] if env else []) + [data_root()]
    for source in sources:
        if _cifar_kind(source) is not None:
            return _cached_cifar(source)
    if env:
        _explain_unusable(Path(env))
    if download is None:
        download = _network_reachable("www.cs.toronto.edu")
    if not download:
        raise RuntimeError(f"CIFAR-10 not found (looked at {', '.join(map(str, sources))}; "
                           f"no network for a download). {HOW_TO_PROVIDE_CIFAR}")
    from torchvision.datasets import CIFAR10
    for train in (True, False):
        CIFAR10(str(data_root()), train=train, download=True)
    return _cached_cifar(data_root())


def _explain_unusable(source: Path) -> None:
    """Raise a RuntimeError that says what is wrong with a ``source`` that exists but cannot be
    read (a damaged zip); return when there is nothing more specific to say than "not found"."""
    if source.is_file() and not zipfile.is_zipfile(source):
        size = source.stat().st_size
        raise RuntimeError(
            f"{source} exists ({size:,} bytes) but is not a valid zip file: it is probably "
            "truncated or damaged (an interrupted copy or download). Fix: copy or download it "
            f"again and test it with `python -m zipfile -t {source}`, or unpack it and point "
            f"BNUTILS_DATA at the folder. {HOW_TO_PROVIDE_CIFAR}")


def _cifar_kind(source: Path) -> str | None:
    """``"torchvision"``, ``"folder"``, ``"zip"`` or None (not a CIFAR-10 source)."""
    if source.is_file():
        return "zip" if zipfile.is_zipfile(source) else None
    if (source / "cifar-10-batches-py").is_dir():
        return "torchvision"
    if source.is_dir() and any((d / "train").is_dir() for d in [source, *_subdirs(source)]):
        return "folder"
    return None


def _subdirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir())


def _cached_cifar(source: Path) -> Data:
    """Decode ``source`` once; later calls read the checksummed cache entry, whose name comes
    from the source's path, size and modification time (for a folder: the top folder's)."""
    stat = source.stat()
    key = f"{DECODER_VERSION}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    entry = cache.cache_dir() / f"cifar10-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    t = cache.load(entry)
    if not isinstance(t, dict) or t.get("checksum") is None or t["checksum"] != _checksum(t):
        t = _decode_cifar(source)
        x = t["x_train"].double().div_(255)
        t["mean"], t["std"] = x.mean((0, 2, 3)).float(), x.std((0, 2, 3)).float()
        t["checksum"] = _checksum(t)
        cache.atomic_save(t, entry)
    return Data("cifar10", t["x_train"], t["y_train"], t["x_test"], t["y_test"],
                classes=tuple(t["classes"]), mean=t["mean"], std=t["std"])


def _checksum(t: dict) -> str | None:
    """SHA-256 of every tensor and the class names; None when something is missing."""
    h = hashlib.sha256()
    for k in ("x_train", "y_train", "x_test", "y_test", "mean", "std"):
        if not isinstance(t.get(k), Tensor):
            return None
        h.update(k.encode())
        h.update(t[k].contiguous().view(torch.uint8).numpy())
    h.update("|".join(t.get("classes", ())).encode())
    return h.hexdigest()


def _decode_cifar(source: Path) -> dict:
    """Read a torchvision root, image-folder tree or zip into uint8/int64 tensors."""
    kind = _cifar_kind(source)
    if kind == "torchvision":
        from torchvision.datasets import CIFAR10
        out = {}
        for split in SPLITS:
            d = CIFAR10(str(source), train=split == "train", download=False)
            out[f"x_{split}"] = torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous()
            out[f"y_{split}"] = torch.tensor(d.targets, dtype=torch.int64)
        return out | {"classes": list(d.classes)}
    if kind == "zip":
        try:
            with zipfile.ZipFile(source) as z:
                files = {n: z.read(n) for n in z.namelist()
                         if n.lower().endswith(IMAGE_SUFFIXES)}
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise RuntimeError(
                f"{source} is a zip file but cannot be read ({e}): it is probably truncated or "
                "damaged (an interrupted copy or download). Fix: copy or download it again and "
                f"test it with `python -m zipfile -t {source}`. {HOW_TO_PROVIDE_CIFAR}") from e
    else:
        files = {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*")
                 if p.suffix.lower() in IMAGE_SUFFIXES}
    return _image_folder(files, str(source))


def _image_folder(files: dict[str, bytes], where: str) -> dict:
    """``.../<split>/<class>/<file>`` -> tensors; classes sorted by name give the labels."""
    found: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for name in sorted(files):
        parts = name.replace("\\", "/").split("/")
        if len(parts) >= 3 and parts[-3] in SPLITS and not parts[-1].startswith("."):
            found[parts[-3]].setdefault(parts[-2], []).append(name)
    classes = sorted(found["train"])
    if not classes or sorted(found["test"]) != classes:
        sample = ", ".join(sorted(files)[:3]) or "no .jpg/.jpeg/.png images at all"
        raise RuntimeError(f"{where} has the wrong layout: need train/<class>/ and test/<class>/ "
                           f"folders with the same classes (one extra top folder is fine), found "
                           f"train {sorted(found['train'])}, test {sorted(found['test'])}; its "
                           f"images are named like: {sample}. {HOW_TO_PROVIDE_CIFAR}")
    out: dict = {"classes": classes}
    for split in SPLITS:
        names = [n for c in classes for n in found[split][c]]
        out[f"x_{split}"] = _decode_images([files[n] for n in names], where)
        out[f"y_{split}"] = torch.tensor([i for i, c in enumerate(classes)
                                          for _ in found[split][c]], dtype=torch.int64)
    return out


def _decode_images(blobs: list[bytes], where: str) -> Tensor:
    """Decode JPEG (batched, torchvision.io.decode_jpeg) or PNG bytes to uint8 ``N x 3 x H x W``."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; still works
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            if all(b[:2] == b"\xff\xd8" for b in blobs):
                images = decode_jpeg(data, mode=ImageReadMode.RGB)
            else:
                images = [decode_image(d, mode=ImageReadMode.RGB) for d in data]
        except RuntimeError as e:
            raise RuntimeError(f"{where}: an image cannot be decoded ({e}); the data set is "
                               "damaged: copy or download it again.") from e
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise RuntimeError(f"{where}: images of different sizes {sorted(shapes)[:3]}")
    return torch.stack(images)


def class_balanced_subset(data: Data, n_train: int, n_test: int, seed: int = 0) -> Data:
    """A deterministic subset with ``n_train`` / ``n_test`` examples per class (quick profile).

    Within each class the examples are a random choice seeded by ``seed``, kept in data order.
    """
    def pick(y: Tensor, per_class: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        chosen = []
        for c in range(data.n_classes):
            idx = (y.cpu() == c).nonzero().flatten()
            if per_class > len(idx):
                full = (" (full CIFAR-10 has 5,000 training and 1,000 test images per class)"
                        if data.name == "cifar10" else "")
                raise ValueError(
                    f"too few images per class in {data.name}: class {data.classes[c]!r} has "
                    f"{len(idx)} examples, asked for {per_class}. The data set looks incomplete"
                    f"{full}: provide all of it, or ask for fewer per class (for a chapter: "
                    "-p n_train_per_class=N -p n_test_per_class=N).")
            chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
        return torch.cat(chosen).sort().values.to(y.device)

    validate.positive_int("n_train", n_train)
    validate.positive_int("n_test", n_test)
    tr, te = pick(data.y_train, n_train), pick(data.y_test, n_test)
    return replace(data, x_train=data.x_train[tr], y_train=data.y_train[tr],
                   x_test=data.x_test[te], y_test=data.y_test[te])


# --------------------------------------------------------------------------------------------
# Deep linear network regression ([STIM18] App. A)
# --------------------------------------------------------------------------------------------


def dln_data(n: int = 1000, dim: int = 10, *, n_test: int = 1000, seed: int = 0) -> Data:
    """[STIM18] App. A: inputs x ~ N(0, I_dim), a fixed matrix A with i.i.d. N(0, 1) entries,
    targets A x; ``n`` training samples (the paper's 1000) and ``n_test`` fresh test samples."""
    for name, value in (("n", n), ("dim", dim), ("n_test", n_test)):
        validate.positive_int(name, value)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g)
    x = torch.randn(n + n_test, dim, generator=g)
    y = x @ a.T
    return Data("dln", x[:n], y[:n], x[n:], y[n:])
