import pytest
import torch
from torch import nn

from bnutils.core.bn import BatchNorm, LpNorm, NoisyBatchNorm
from bnutils.core.models import DLN, MLP, VGG, VGG_CONFIGS


def norms(net):
    return [type(layer.norm) for layer in net.layers]


def test_mlp_is15_shape_and_norm_before_each_sigmoid():
    net = MLP(784, norm="bn")
    assert [layer.linear.out_features for layer in net.layers] == [100, 100, 100, 10]
    assert norms(net) == [BatchNorm] * 3 + [nn.Identity]
    assert all(isinstance(layer.act, nn.Sigmoid) for layer in net.layers[:3])
    assert all(layer.linear.bias is None for layer in net.layers[:3])  # cancelled by BN
    assert net(torch.randn(5, 784)).shape == (5, 10)
    plain = MLP(64, hidden=(7, 9), n_classes=3)
    assert norms(plain) == [nn.Identity] * 3
    assert all(layer.linear.bias is not None for layer in plain.layers)
    assert plain(torch.randn(4, 64)).shape == (4, 3)


@pytest.mark.parametrize("config, n_conv", [("A", 8), ("D", 13), ("E", 16)])
def test_vgg_conv_counts_and_output(config, n_conv):
    net = VGG(config, width=0.125)
    assert len(net.convs) == n_conv
    # the head: one hidden layer and the output layer
    assert sum(isinstance(layer.linear, nn.Linear) for layer in net.layers) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert [layer.linear.out_channels for layer in net.convs] == \
        [round(c / 8) for c in VGG_CONFIGS[config] if c != "M"]


def test_vgg_norm_placements():
    assert norms(VGG("D", width=0.125)) == [nn.Identity] * 15
    everywhere = VGG("D", width=0.125, norm="bn")
    assert norms(everywhere) == [BatchNorm] * 14 + [nn.Identity]  # convs + hidden linear
    one = VGG("A", width=0.125, norm="bn", norm_layers=(4,))
    assert [i for i, t in enumerate(norms(one), 1) if t is not nn.Identity] == [4]
    assert one.layers[3].linear.bias is None and one.layers[2].linear.bias is not None
    assert norms(VGG("A", width=0.125, norm="noisy_bn"))[0] is NoisyBatchNorm
    for kind, p in (("l1", 1), ("l2", 2), ("linf", float("inf"))):
        layer = VGG("A", width=0.125, norm=kind).layers[0].norm
        assert isinstance(layer, LpNorm) and layer.p == p


def test_glorot_uniform_init():
    torch.manual_seed(0)
    conv = VGG("D", width=0.5).convs[5].linear
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    bound = (6 / (fan_in + fan_out)) ** 0.5
    w = conv.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert abs(w.var().item() - bound ** 2 / 3) < 0.1 * bound ** 2 / 3
    assert torch.all(conv.bias == 0)


def test_dln_is_a_product_of_25_square_matrices():
    torch.manual_seed(0)
    net = DLN()
    assert len(net.layers) == 25
    assert all(layer.linear.weight.shape == (10, 10) for layer in net.layers)
    net.double()
    product = torch.eye(10, dtype=torch.float64)
    for layer in net.layers:
        product = layer.linear.weight @ product
    x = torch.randn(6, 10, dtype=torch.float64)
    assert torch.allclose(net(x), x @ product.T, rtol=1e-10, atol=1e-12)
    assert norms(DLN(norm="bn")) == [BatchNorm] * 25
    assert norms(DLN(depth=3, norm="bn", norm_layers=(2,))) == [nn.Identity, BatchNorm, nn.Identity]


@pytest.mark.parametrize("kw, match", [
    (dict(norm="batch"), "allowed: none, bn"),
    (dict(norm="bn", norm_layers=(0,)), "allowed: 1..3"),
    (dict(act="tanh"), "allowed: sigmoid"),
])
def test_mlp_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        MLP(10, **kw)


def test_vgg_bad_arguments():
    with pytest.raises(ValueError, match="allowed: A, B, D, E"):
        VGG("C")
    with pytest.raises(ValueError, match="allowed: 1..14"):
        VGG("D", norm="bn", norm_layers=(16,))


def test_torch_bn_is_equivalent_to_bnutils_bn():
    """norm_kw={"bn_impl": "torch"} gives the same numbers as bnutils.bn (train and eval)."""
    torch.manual_seed(0)
    ours = VGG("A", width=0.125, head=(16,), norm="bn").double()
    theirs = VGG("A", width=0.125, head=(16,), norm="bn", norm_kw={"bn_impl": "torch"}).double()
    assert isinstance(theirs.layers[0].norm, nn.BatchNorm2d)
    assert isinstance(theirs.layers[8].norm, nn.BatchNorm1d)
    theirs.load_state_dict(ours.state_dict(), strict=False)
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in (ours, theirs)]
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(8, 3, 32, 32, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (8,), generator=g)
        outs = []
        for net, opt in zip((ours, theirs), opts):
            opt.zero_grad()
            out = net(x)
            nn.functional.cross_entropy(out, y).backward()
            opt.step()
            outs.append(out)
        assert torch.allclose(outs[0], outs[1], rtol=1e-9, atol=1e-10)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)
    for k in ("running_mean", "running_var"):
        assert torch.allclose(getattr(ours.layers[2].norm, k), getattr(theirs.layers[2].norm, k))
    ours.eval(), theirs.eval()
    assert torch.allclose(ours(x), theirs(x), rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="'torch' only with norm='bn'"):
        VGG("A", norm="l2", norm_kw={"bn_impl": "torch"})
