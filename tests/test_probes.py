import copy


import pytest
import torch
from torch import nn

from bnutils.core.models import MLP, VGG
from bnutils.core.probes import ActivationProbe, activations, layer_groups, loss_and_grad, preserved


def small_vgg(norm="bn"):
    torch.manual_seed(0)
    return VGG("A", width=0.0625, head=(16,), norm=norm)


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def trained_with_optimizer(net):
    """A few SGD-with-momentum steps, so that the optimizer has state and the BN buffers moved."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for s in range(2):
        x, y = batch(seed=10 + s)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return opt


def snapshot(net, opt):
    return (copy.deepcopy(net.state_dict()), [None if p.grad is None else p.grad.clone()
                                              for p in net.parameters()],
            copy.deepcopy(opt.state_dict()), [m.training for m in net.modules()],
            torch.get_rng_state())


def assert_bitwise_equal(a, b):
    (sa, ga, oa, ma, ra), (sb, gb, ob, mb, rb) = a, b
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert all(torch.equal(x, y) for x, y in zip(ga, gb))
    assert oa["param_groups"] == ob["param_groups"]
    for k in oa["state"]:
        assert torch.equal(oa["state"][k]["momentum_buffer"], ob["state"][k]["momentum_buffer"])
    assert ma == mb and torch.equal(ra, rb)


def torch_bn_vgg():
    """With torch.nn.BatchNorm1d/2d, whose buffers include num_batches_tracked."""
    torch.manual_seed(0)
    return VGG("A", width=0.0625, head=(16,), norm="bn", norm_kw={"bn_impl": "torch"})


def test_layer_groups_follow_stim18_def_2_1():
    net = small_vgg()
    groups = layer_groups(net)
    assert len(groups) == 10  # 8 convs, 1 hidden linear, output
    assert list(groups[3]) == ["layers.3.linear.weight", "layers.3.norm.weight",
                               "layers.3.norm.bias"]
    assert sum(len(g) for g in groups) == len(list(net.parameters()))
    named = dict(net.named_parameters())
    assert all(named[k] is p for g in groups for k, p in g.items())


@pytest.mark.parametrize("make", [small_vgg, torch_bn_vgg, lambda: small_vgg("noisy_bn")])
def test_loss_and_grad_leaves_everything_bitwise_equal(make):
    net = make()
    opt = trained_with_optimizer(net)
    net.train()
    before = snapshot(net, opt)
    x, y = batch()
    first = dict(layer_groups(net)[0])
    at = {k: p + 0.01 for k, p in first.items()}
    loss, grads = loss_and_grad(net, x, y, at)
    assert torch.isfinite(loss) and set(grads) == set(dict(net.named_parameters()))
    assert_bitwise_equal(before, snapshot(net, opt))
    net.eval()
    before = snapshot(net, opt)
    activations(net, x, (3, 9), train_mode=True)
    assert_bitwise_equal(before, snapshot(net, opt))


def test_loss_and_grad_is_the_gradient_at_the_given_point():
    net = small_vgg()
    x, y = batch()
    moved = copy.deepcopy(net)
    with torch.no_grad():
        for p in moved.layers[0].parameters():
            p.add_(0.05)
    moved.train()
    expected = nn.functional.cross_entropy(moved(x), y)
    expected.backward()
    at = {k: p + 0.05 for k, p in layer_groups(net)[0].items()}
    loss, grads = loss_and_grad(net, x, y, at)
    assert torch.allclose(loss, expected, rtol=1e-6)
    for (k, p), q in zip(net.named_parameters(), moved.parameters()):
        assert torch.allclose(grads[k], q.grad, rtol=1e-4, atol=1e-6), k
    unchanged, _ = loss_and_grad(net, x, y)
    assert not torch.allclose(unchanged, loss)


def test_activations_pre_and_post_normalization():
    net = small_vgg()
    x, _ = batch(16)
    acts = activations(net, x, (3,), train_mode=True)
    pre, post = acts["pre3"], acts["post3"]
    assert pre.shape == post.shape == (16, 16, 8, 8)
    assert torch.allclose(post.mean((0, 2, 3)), torch.zeros(16), atol=1e-5)  # gamma=1, beta=0
    assert torch.allclose(post.var((0, 2, 3), unbiased=False), torch.ones(16), atol=1e-3)
    assert pre.mean((0, 2, 3)).abs().max() > 1e-3
    plain = activations(small_vgg("none"), x, (2,))
    assert torch.equal(plain["pre2"], plain["post2"])
    with pytest.raises(ValueError, match="allowed: 1..10"):
        activations(net, x, (11,))


def test_activation_probe_samples_fixed_units_and_values():
    torch.manual_seed(0)
    net = MLP(5, hidden=(6, 6), norm="bn")
    x = torch.randn(40, 5)
    probe = ActivationProbe(x, layers=(2,), where=("post",), units=3, values=25)
    a, b = probe(net), probe(net)
    assert set(a) == {"post2"} and a["post2"].shape == (3, 25)
    assert torch.equal(a["post2"], b["post2"])
    full = activations(net, x, (2,))["post2"].T[:3]
    assert all(torch.isin(a["post2"][j], full[j]).all() for j in range(3))
    with pytest.raises(ValueError, match="allowed: pre, post"):
        ActivationProbe(x, layers=(1,), where=("out",))


def test_preserved_restores_buffers_after_a_train_mode_forward():
    net = small_vgg()
    net.eval()
    before = copy.deepcopy(net.state_dict())
    with preserved(net):
        net.train()
        net(batch()[0])
        assert not torch.equal(net.state_dict()["layers.0.norm.running_mean"],
                               before["layers.0.norm.running_mean"])
    assert not net.training
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_layer_groups_rejects_other_models():
    with pytest.raises(TypeError, match="bnutils.core.models.Net"):
        layer_groups(nn.Sequential(nn.Linear(2, 2)))


def test_g_prime_of_stim18_def_2_1_by_hand():
    """G'_{t,i}: the gradient of layer i after layers 1..i-1 (weights, bias, gamma, beta) took
    their SGD step on the same batch; layer i and later keep W^(t)."""
    torch.manual_seed(0)
    net = MLP(4, hidden=(5, 5, 5), n_classes=3, norm="bn", norm_layers=[2]).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    i, lr = 3, 0.5
    _, grads = loss_and_grad(net, x, y)
    groups = layer_groups(net)
    earlier = {k: p - lr * grads[k] for grp in groups[:i - 1] for k, p in grp.items()}
    _, g_prime = loss_and_grad(net, x, y, at=earlier)

    hand = copy.deepcopy(net).train()
    nn.functional.cross_entropy(hand(x), y).backward()
    stepped = [p for layer in hand.layers[:i - 1] for p in layer.parameters()]
    assert len(stepped) == 5  # layer 1: weight, bias; layer 2: weight, gamma, beta
    with torch.no_grad():
        for p in stepped:
            p -= lr * p.grad
    hand.zero_grad()
    nn.functional.cross_entropy(hand(x), y).backward()
    for k, q in zip(groups[i - 1], hand.layers[i - 1].parameters()):
        torch.testing.assert_close(g_prime[k], q.grad, rtol=1e-5, atol=1e-8)
        assert not torch.allclose(g_prime[k], grads[k])  # the step did move G'
    for a, b in zip(net.layers[i - 1:].parameters(), hand.layers[i - 1:].parameters()):
        assert torch.equal(a, b)


def test_loss_and_grad_forks_a_noisy_bn_generator():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = MLP(5, hidden=(6, 6), norm="noisy_bn", norm_kw={"generator": g})
    x, y = torch.randn(16, 5), torch.randint(0, 10, (16,))
    state = g.get_state().clone()
    first, _ = loss_and_grad(net, x, y)
    assert torch.equal(g.get_state(), state)
    second, _ = loss_and_grad(net, x, y)
    assert torch.equal(first, second)  # G and G' see the same noise
    net.train()(x)
    assert not torch.equal(g.get_state(), state)  # an ordinary forward does draw from it
