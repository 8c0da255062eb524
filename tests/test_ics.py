"""[STIM18] Def. 2.1 against a hand computation on tiny networks."""
import pytest
import torch
from torch import nn

from bnutils.core.models import MLP
from bnutils.core.probes import Step
from bnutils.measure.ics import ICSProbe, ics


def tiny(norm):
    torch.manual_seed(0)
    return MLP(5, hidden=(6, 7, 4), n_classes=3, norm=norm).double()


def batch(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,),
                                                                               generator=g)


@pytest.mark.parametrize("norm", ["none", "bn"])
@pytest.mark.parametrize("i", [1, 2, 3])
def test_g_prime_steps_every_parameter_of_the_lower_layers_only(norm, i):
    net, (x, y), lr = tiny(norm), batch(), 0.3
    G, G_after = ics(Step(net, x, y, lr, "cross_entropy", 0), i)
    # by hand: a copy whose layers 1..i-1 take their SGD step (weights, biases, gamma, beta)
    ref = tiny(norm)
    ref.train()
    nn.functional.cross_entropy(ref(x), y).backward()
    g_hand = ref.layers[i - 1].linear.weight.grad.flatten().clone()
    with torch.no_grad():
        for layer in ref.layers[:i - 1]:
            for p in layer.parameters():
                p -= lr * p.grad
    ref.zero_grad()
    nn.functional.cross_entropy(ref(x), y).backward()  # train mode: new batch statistics
    torch.testing.assert_close(G, g_hand)
    torch.testing.assert_close(G_after, ref.layers[i - 1].linear.weight.grad.flatten())
    if i == 1:  # nothing below the first layer: G' = G
        torch.testing.assert_close(G, G_after)
    else:
        assert (G - G_after).norm() > 0


def test_probe_reports_difference_cosine_and_norm():
    net, (x, y) = tiny("bn"), batch()
    out = ICSProbe(layers=(2, 3), every=1)(Step(net, x, y, 0.3, "cross_entropy", 0))
    G, G_after = ics(Step(net, x, y, 0.3, "cross_entropy", 0), 3)
    assert out["ics_l2_3"] == pytest.approx((G - G_after).norm().item())
    assert out["ics_cos_3"] == pytest.approx((G @ G_after / G.norm() / G_after.norm()).item())
    assert out["grad_norm_3"] == pytest.approx(G.norm().item())
    assert set(out) == {f"{k}_{i}" for k in ("ics_l2", "ics_cos", "grad_norm") for i in (2, 3)}


def test_bad_layers_are_refused():
    with pytest.raises(ValueError, match="every must be a positive integer"):
        ICSProbe(layers=(1,), every=0)
    net, (x, y) = tiny("none"), batch()
    with pytest.raises(ValueError, match="layer 9 out of range"):
        ics(Step(net, x, y, 0.1, "cross_entropy", 0), 9)


def test_ics_reading_counts_every_comparison_for_and_against_the_claim():
    from bnutils.chapters.ics import ics_reading
    from bnutils.measure.stats import Interval

    larger = {("bn", layer, "l2"): Interval(0.5, 0.4, 0.6, 5) for layer in (5, 10, 9, 17)}
    larger.update({("bn", layer, "cos"): Interval(-0.3, -0.4, -0.2, 5) for layer in (5, 10, 9, 17)})
    smaller = dict(larger)
    smaller["bn", 9, "l2"] = Interval(-1.0, -1.1, -0.9, 5)      # BN's ICS 10x smaller: against
    smaller["bn", 17, "cos"] = Interval(0.0, -0.5, 0.5, 5)      # straddles the margin: undecided
    text = ics_reading({"vgg": {0.1: larger, 0.01: larger}, "dln": {1e-6: larger, 1e-7: smaller}})
    assert text == "of the 16 comparisons, 14 agree with the claim, 1 against it, 1 undecided"
