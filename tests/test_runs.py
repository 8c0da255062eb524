"""The shared runs of Chapters 2 and 3 (bnutils.measure.runs), on tiny deep linear networks."""
import numpy as np
import pytest

from bnutils.measure import runs as R


def tiny(norm="bn", seed=0, lr=1e-6):
    return R.DLNRun(norm=norm, lr=lr, seed=seed, dln_steps=6, dln_probe_every=3,
                    dln_hessian_every=3)


def test_runs_are_described_by_a_chapters_knobs():
    knobs = {**R.VGG_PROTOCOL["quick"], **R.DLN_PROTOCOL["quick"], "lr": 0.1}
    vgg = R.VGGRun.of(knobs, "bn", 0.5, 3, config="A", norm_layers=(4,))
    assert (vgg.norm, vgg.lr, vgg.seed, vgg.config, vgg.norm_layers) == ("bn", 0.5, 3, "A", (4,))
    assert vgg.steps == R.VGG_PROTOCOL["quick"]["steps"] and vgg.layers == R.VGG_LAYERS["A"]
    dln = R.DLNRun.of(knobs, "l1", 1e-7, 2)
    assert dln.dln_steps == R.DLN_PROTOCOL["quick"]["dln_steps"] and dln.norm == "l1"


def test_a_run_carries_every_probe_and_is_cached():
    h = R.train_run(tiny(), progress=False)
    assert list(h.measure_steps["ics_l2_9"]) == [0, 3]
    assert h.measures["landscape_loss"].shape == (2, len(R.DLN_FACTORS))
    assert h.measures["hessian_top"].shape == (2,)
    assert h.probes["post9"].shape[:2] == (3, 10)  # evaluations at steps 0, 3, 6; 10 units
    again = R.cached_run(tiny())
    assert again is not None and np.array_equal(again.train_loss, h.train_loss)
    assert R.cached_run(tiny(seed=1)) is None


def test_side_by_side_gives_the_results_of_one_after_the_other():
    specs = [tiny("none"), tiny("bn", seed=1)]
    parallel = R.train_all(specs, workers=2)
    for spec, h in zip(specs, parallel):
        assert np.array_equal(h.train_loss, R.cached_run(spec).train_loss)
    serial = R.train_all([tiny("none", lr=2e-6)], workers=1)
    assert len(serial) == 1 and serial[0].steps == 6
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        R.train_all(specs, workers=0)


def test_cost_record_sums_training_and_probes():
    h = R.train_run(tiny(), progress=False)
    costs = R.probe_costs([h, h])
    assert set(costs) >= {"ICSProbe", "LandscapeProbe", "HessianProbe", "gradient"}
    assert sum(costs.values()) == pytest.approx(h.probe_seconds / h.seconds)
    record = R.cost_record([h, h])
    assert "over 2 runs" in record["training + probes of the runs (summed)"]


@pytest.mark.parametrize("change, match", [
    (dict(norm="standard"), "unknown norm 'standard'"), (dict(lr=-1.0), "lr must be"),
    (dict(dln_steps=0), "dln_steps must be a positive integer"), (dict(seed=-1), "seed")])
def test_bad_runs_are_refused_before_any_work(change, match):
    with pytest.raises(ValueError, match=match):
        R.DLNRun(**{**vars(tiny()), **change})


@pytest.mark.parametrize("norm", ["bn", "noisy_bn"])
def test_every_probe_together_leaves_training_bit_identical(norm):
    import torch

    from bnutils.core.data import Data
    from bnutils.core.models import MLP
    from bnutils.core.train import train
    from bnutils.measure.ics import ICSProbe
    from bnutils.measure.landscape import HessianProbe, LandscapeProbe
    from bnutils.measure.shift import MomentProbe

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(192, 6, generator=g), torch.randint(0, 3, (192,), generator=g)
    data = Data("tiny", x[:128], y[:128], x[128:], y[128:], classes=("a", "b", "c"))
    probes = [MomentProbe(x[:32], layers=(1, 2), every=3), ICSProbe(layers=(2, 3), every=3),
              LandscapeProbe(factors=(0.5, 2.0), every=4), HessianProbe(iterations=3, every=5)]
    results = []
    for step_probes in ([], probes):
        torch.manual_seed(1)
        net = MLP(6, hidden=(8, 8), n_classes=3, norm=norm)
        h = train(net, data, steps=12, lr=0.3, batch_size=32, seed=2, eval_every=4,
                  step_probes=step_probes, progress=False)
        results.append((h, net.state_dict()))
    (a, sa), (b, sb) = results
    assert np.array_equal(a.train_loss, b.train_loss) and np.array_equal(a.test_loss, b.test_loss)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert {"ics_l2_2", "dmean_1", "landscape_loss", "hessian_top"} <= set(b.measures)
