import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_jpeg

from bnutils.core import data as D
from bnutils.core.data import Data, class_balanced_subset, dln_data, load_cifar10, load_digits_data

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
CLASSES = ("cat", "dog", "frog")
REAL_ZIP = Path(os.environ["BNUTILS_DATA"]) if os.environ.get("BNUTILS_DATA", "").endswith(".zip") \
    else None
OUTER_CACHE = os.environ.get("BNUTILS_CACHE")


@pytest.fixture(autouse=True)
def no_data_source(monkeypatch):
    """Data come only from what a test provides (the cache is per test, see conftest.py)."""
    monkeypatch.delenv("BNUTILS_DATA", raising=False)


# ---------------------------------------------------------------------------------- digits


def fake_mnist(root: Path, n_train=30, n_test=10) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = bytes((i * 7) % 256 for i in range(n * 28 * 28))
        labels = bytes(i % 10 for i in range(n))
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28)
                                                          + images)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels)


def test_sklearn_digits_split_is_stratified_and_deterministic():
    a, b = load_digits_data("digits"), load_digits_data("digits")
    assert a.name == "digits" and a.x_train.shape == (1347, 64) and a.x_test.shape == (450, 64)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert 0 <= a.x_train.min() and a.x_train.max() == 1
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    all_counts = a.y_train.bincount() + a.y_test.bincount()
    assert ((a.y_test.bincount() - all_counts / 4).abs() <= 1).all()  # stratified 75/25
    assert a.in_features == 64 and a.n_classes == 10


def test_auto_falls_back_to_digits_and_mnist_explains_how_to_provide_it(tmp_path):
    assert load_digits_data("auto", root=tmp_path, download=False).name == "digits"
    with pytest.raises(RuntimeError, match=r"(?s)\(1\).*BNUTILS_DATA.*\(2\).*\(3\).*digits"):
        load_digits_data("mnist", root=tmp_path, download=False)
    with pytest.raises(ValueError, match="allowed: auto, mnist, digits"):
        load_digits_data("cifar")


def test_mnist_from_a_torchvision_root(tmp_path, monkeypatch):
    fake_mnist(tmp_path)
    d = load_digits_data("mnist", root=tmp_path)
    assert d.name == "mnist" and d.x_train.shape == (30, 784) and d.x_test.shape == (10, 784)
    assert d.x_train.max() <= 1 and d.y_train[:3].tolist() == [0, 1, 2]
    monkeypatch.setenv("BNUTILS_DATA", str(tmp_path))
    assert load_digits_data("auto").name == "mnist"


# ---------------------------------------------------------------------------------- CIFAR-10


def image(label: int, i: int) -> torch.Tensor:
    """A 32x32 image whose colour encodes its class (JPEG keeps flat colours nearly exact)."""
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    img[label] = 200
    img[:, :4, :4] = 10 * i
    return img


def write_tree(files: dict[str, bytes], root: Path | None = None, zip_path: Path | None = None):
    if zip_path is not None:
        with zipfile.ZipFile(zip_path, "w") as z:
            for name, blob in files.items():
                z.writestr(name, blob)
    else:
        for name, blob in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(blob)


def tiny_tree(top: str = "cifar10/", n_train: int = 4, n_test: int = 2) -> dict[str, bytes]:
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                jpeg = encode_jpeg(image(c, i), quality=95).numpy().tobytes()
                files[f"{top}{split}/{name}/{i:04d}.jpg"] = jpeg
    return files


@pytest.fixture
def tiny_zip(tmp_path) -> Path:
    path = tmp_path / "tiny.zip"
    write_tree(tiny_tree(), zip_path=path)
    return path


def check_tiny(d: Data, n_train=4, n_test=2):
    assert d.name == "cifar10" and d.classes == CLASSES
    assert d.x_train.shape == (3 * n_train, 3, 32, 32) and d.x_train.dtype == torch.uint8
    assert d.y_train.tolist() == [c for c in range(3) for _ in range(n_train)]
    assert d.x_test.shape == (3 * n_test, 3, 32, 32) and d.y_test.dtype == torch.int64
    colour = d.x_train[:, :, 16, 16].float().argmax(1)  # decoded pixels carry the label
    assert torch.equal(colour, d.y_train)


def test_cifar_from_zip_with_top_folder_and_from_folder(tiny_zip, tmp_path):
    check_tiny(load_cifar10(tiny_zip))
    write_tree(tiny_tree(top=""), root=tmp_path / "tree")
    check_tiny(load_cifar10(tmp_path / "tree"))


def test_cifar_from_environment_and_inputs_are_standardised(tiny_zip, monkeypatch):
    monkeypatch.setenv("BNUTILS_DATA", str(tiny_zip))
    d = load_cifar10()
    check_tiny(d)
    x = d.inputs(d.x_train)
    assert x.dtype == torch.float32
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3)), torch.ones(3), atol=1e-4)


def test_second_load_reads_the_cache(tiny_zip, monkeypatch):
    first = load_cifar10(tiny_zip)
    monkeypatch.setattr(D, "_decode_cifar", lambda source: pytest.fail("decoded twice"))
    second = load_cifar10(tiny_zip)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.std, second.std)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_checksum"])
def test_corrupted_cache_is_rebuilt(tiny_zip, monkeypatch, damage):
    good = load_cifar10(tiny_zip)
    (entry,) = Path(os.environ["BNUTILS_CACHE"]).glob("cifar10-*.pt")
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:len(entry.read_bytes()) // 2])
    elif damage == "flip":  # a valid file whose pixels changed: only the checksum can tell
        t = torch.load(entry, weights_only=False)
        t["x_train"][0, 0, 0, 0] += 1
        torch.save(t, entry)
    else:  # a dict missing keys, checksum included: must not read as None == None
        t = torch.load(entry, weights_only=False)
        for k in ("checksum", "mean"):
            del t[k]
        torch.save(t, entry)
    decoded = []
    original = D._decode_cifar
    monkeypatch.setattr(D, "_decode_cifar", lambda s: decoded.append(1) or original(s))
    again = load_cifar10(tiny_zip)
    assert decoded == [1] and torch.equal(again.x_train, good.x_train)
    assert torch.equal(load_cifar10(tiny_zip).x_train, good.x_train) and decoded == [1]


def test_no_source_gives_one_error_listing_the_three_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("BNUTILS_DATA", str(tmp_path / "nothing-here"))
    three_ways = r"(?s)\(1\) a torchvision.*\(2\) an image-folder.*\(3\) a zip"
    with pytest.raises(RuntimeError, match=three_ways):
        load_cifar10(download=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="not a CIFAR-10 source"):
        load_cifar10(tmp_path / "empty")


def test_mismatched_classes_are_rejected(tmp_path):
    files = {k: v for k, v in tiny_tree().items() if "test/frog" not in k}
    write_tree(files, zip_path=tmp_path / "bad.zip")
    with pytest.raises(RuntimeError, match="same classes"):
        load_cifar10(tmp_path / "bad.zip")


@pytest.mark.parametrize("damage", ["truncated", "not_a_zip"])
def test_damaged_zip_says_it_exists_but_is_not_a_valid_zip(tiny_zip, monkeypatch, damage):
    blob = tiny_zip.read_bytes()
    tiny_zip.write_bytes(blob[:len(blob) // 2] if damage == "truncated" else b"<html>" * 100)
    says = r"(?s)exists \(\d[\d,]* bytes\) but is not a valid zip.*python -m zipfile -t"
    with pytest.raises(RuntimeError, match=says) as explicit:
        load_cifar10(tiny_zip)
    assert "not found" not in str(explicit.value)
    monkeypatch.setenv("BNUTILS_DATA", str(tiny_zip))  # the way the book's Makefile passes it
    with pytest.raises(RuntimeError, match=says) as from_env:
        load_cifar10(download=False)
    assert str(tiny_zip) in str(from_env.value) and "not found" not in str(from_env.value)


def test_zip_with_a_damaged_member_says_so(tmp_path):
    path = tmp_path / "crc.zip"
    write_tree(tiny_tree(), zip_path=path)
    blob = bytearray(path.read_bytes())
    i = blob.index(b"\xff\xd8")  # the first JPEG's bytes, inside the archive
    blob[i + 50] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(RuntimeError, match=r"(?s)is a zip file but cannot be read.*CRC"):
        load_cifar10(path)


def test_zip_with_the_wrong_layout_says_so(tmp_path):
    flat = {k.replace("train/", "").replace("test/", "x"): v for k, v in tiny_tree().items()}
    write_tree(flat, zip_path=tmp_path / "flat.zip")
    with pytest.raises(RuntimeError, match=r"(?s)has the wrong layout.*named like: cifar10/"):
        load_cifar10(tmp_path / "flat.zip")


def test_too_few_images_per_class_says_how_to_fix(tiny_zip):
    d = load_cifar10(tiny_zip)
    with pytest.raises(ValueError, match=r"(?s)too few images per class.*has 4 examples, "
                                         r"asked for 500.*n_train_per_class"):
        class_balanced_subset(d, 500, 1)


def test_class_balanced_subset_is_deterministic(tiny_zip):
    d = load_cifar10(tiny_zip)
    a, b = class_balanced_subset(d, 2, 1), class_balanced_subset(d, 2, 1)
    assert a.y_train.bincount().tolist() == [2, 2, 2] and a.y_test.bincount().tolist() == [1, 1, 1]
    assert torch.equal(a.x_train, b.x_train)
    assert any(not torch.equal(class_balanced_subset(d, 2, 1, seed=s).x_train, a.x_train)
               for s in range(1, 6))
    assert torch.equal(a.mean, d.mean)  # standardised with the full training set's statistics
    with pytest.raises(ValueError, match="asked for 5"):
        class_balanced_subset(d, 5, 1)


@pytest.mark.skipif(not (REAL_ZIP and REAL_ZIP.is_file()), reason="BNUTILS_DATA names no zip")
def test_real_cifar10_zip(monkeypatch):
    """The shared JPEG copy; uses the session's cache, so only the first run decodes it."""
    if OUTER_CACHE:
        monkeypatch.setenv("BNUTILS_CACHE", OUTER_CACHE)
    else:
        monkeypatch.delenv("BNUTILS_CACHE")
    d = load_cifar10(REAL_ZIP)
    assert d.x_train.shape == (50000, 3, 32, 32) and d.x_test.shape == (10000, 3, 32, 32)
    assert d.y_train.bincount().tolist() == [5000] * 10
    assert d.y_test.bincount().tolist() == [1000] * 10
    assert d.classes[:3] == ("airplane", "automobile", "bird")
    assert torch.allclose(d.mean, torch.tensor([0.491, 0.482, 0.447]), atol=0.01)


# ---------------------------------------------------------------------------------- DLN


def test_dln_data_is_a_fixed_linear_map():
    d = dln_data()
    assert d.x_train.shape == d.y_train.shape == (1000, 10) and d.x_test.shape == (1000, 10)
    a = torch.linalg.lstsq(d.x_train, d.y_train).solution.T
    assert torch.allclose(d.x_test @ a.T, d.y_test, atol=1e-4)
    assert torch.equal(dln_data().x_train, d.x_train)
    assert not torch.equal(dln_data(seed=1).y_train, d.y_train)
