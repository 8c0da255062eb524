"""Smoke tests of the throughput benchmark (bnutils.benchmark); not a timed test."""
import numpy as np
import pytest
import torch

from bnutils.benchmark import BenchResult, PlainCIFAR, benchmark, plain_batches
from bnutils.cli import main
from bnutils.core.data import Data


def tiny_images(n: int = 64, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    return Data("tiny", x, y, x[:16], y[:16], classes=tuple("abcdefghij"),
                mean=torch.tensor([0.5, 0.4, 0.3]), std=torch.tensor([0.2, 0.25, 0.3]))


def test_plain_dataset_gives_the_fast_loops_inputs():
    data = tiny_images()
    x, y = PlainCIFAR(data)[5]
    assert y == 5
    assert torch.allclose(x, data.inputs(data.x_train[5:6])[0], atol=1e-6)


def test_plain_batches_cover_each_epoch_once():
    data = tiny_images(n=40)
    data = Data("ids", data.x_train, torch.arange(40), data.x_test, data.y_test,
                classes=data.classes, mean=data.mean, std=data.std)
    batches = plain_batches(data, 8, workers=0, seed=0, pin_memory=False)
    for _ in range(2):  # two epochs, each a permutation of the 40 examples
        ids = torch.cat([next(batches)[1] for _ in range(5)])
        assert sorted(ids.tolist()) == list(range(40))
        assert ids.tolist() != list(range(40))  # shuffled


def test_benchmark_times_both_loops():
    result = benchmark(tiny_images(), config="A", width=1 / 16, batch_size=16, steps=2, warmup=1,
                       repeats=2, workers=0, device="cpu")
    assert len(result.fast) == len(result.plain) == 2
    assert all(np.isfinite(v) and v > 0 for v in result.fast + result.plain)
    assert result.ratio == pytest.approx(np.median(result.fast) / np.median(result.plain))
    text = repr(result.table())
    assert "ratio fast / plain" in text and "fp32" in text and "batch_size | 16" in text


def test_ratio_is_fast_over_plain():
    r = BenchResult(fast=(300.0, 100.0, 200.0), plain=(50.0, 150.0, 100.0), settings={})
    assert r.ratio == pytest.approx(2.0)


@pytest.mark.parametrize("kw, match", [
    (dict(steps=0), "steps"), (dict(workers=-1), "workers"), (dict(config="Z"), "allowed"),
    (dict(batch_size=1000), "batch_size"), (dict(width=0), "width"),
    (dict(device="tpu"), "allowed")])
def test_bad_arguments_raise_before_any_work(kw, match):
    with pytest.raises(ValueError, match=match):
        benchmark(tiny_images(), **{"batch_size": 16, **kw})


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit, match="n_train"):
        main(["bench", "--n-train", "5"])


def test_vgg_train_flops_by_hand():
    from bnutils.benchmark import vgg_train_flops

    # VGG-A at width 1/64: convs 3->1 (32x32), 1->2 (16x16), 2->4 x2 (8x8), 4->8 x2 (4x4),
    # 8->8 x2 (2x2); then linear 8->8 (head 512/64) and 8->10
    convs = [(3, 1, 32), (1, 2, 16), (2, 4, 8), (4, 4, 8), (4, 8, 4), (8, 8, 4), (8, 8, 2),
             (8, 8, 2)]
    forward = sum(2 * 9 * a * b * s * s for a, b, s in convs) + 2 * 8 * 8 + 2 * 8 * 10
    assert vgg_train_flops("A", width=1 / 64) == 3 * forward
    assert vgg_train_flops("D", width=1.0) > 0.9e9  # VGG-16 on 32x32: about 0.3 GFLOP forward
