import numpy as np
import pytest
import torch

from bnutils.core.data import Data
from bnutils.core.models import DLN, MLP, VGG
from bnutils.core.probes import ActivationProbe
from bnutils.core.train import (History, cached_train, epoch_permutation, evaluate,
                                final_accuracy, steps_to, train)


def blobs(n=400, d=12, k=3, seed=0) -> Data:
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(k, d, generator=g)
    y = torch.arange(2 * n) % k
    x = centers[y] + torch.randn(2 * n, d, generator=g)
    return Data("blobs", x[:n], y[:n], x[n:], y[n:], classes=tuple("abc"[:k]))


def run(norm="bn", seed=0, steps=60, **kw):
    torch.manual_seed(seed)
    net = MLP(12, hidden=(16, 16), n_classes=3, norm=norm)
    kw = dict(steps=steps, lr=0.5, batch_size=32, seed=seed, eval_every=20, progress=False) | kw
    return net, train(net, blobs(), **kw)


def test_learns_and_records_every_step():
    _, h = run()
    assert isinstance(h, History) and not h.diverged and h.steps == 60
    assert h.train_loss.shape == h.train_acc.shape == (60,)
    assert list(h.eval_steps) == [0, 20, 40, 60]
    assert h.test_acc[0] < 0.7 and h.test_acc[-1] > 0.9
    assert h.train_loss[-10:].mean() < h.train_loss[:10].mean()


@pytest.mark.parametrize("norm", ["bn", "noisy_bn"])
def test_same_seed_bit_identical_curves(norm):
    a, b, c = run(norm)[1], run(norm)[1], run(norm, seed=1)[1]
    for field in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.train_loss, c.train_loss)


def test_epoch_permutations_are_reproducible_and_differ_between_epochs():
    dev = torch.device("cpu")
    p = epoch_permutation(100, 3, 0, dev)
    assert torch.equal(p.sort().values, torch.arange(100))
    assert torch.equal(p, epoch_permutation(100, 3, 0, dev))
    assert not torch.equal(p, epoch_permutation(100, 3, 1, dev))
    assert not torch.equal(p, epoch_permutation(100, 4, 0, dev))


def test_divergence_stops_cleanly_and_marks_the_step():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 10, generator=g)
    data = Data("lin", x, x @ torch.randn(10, 10, generator=g), x, x)
    torch.manual_seed(0)
    h = train(DLN(depth=3), data, steps=500, lr=1.0, batch_size=None, loss="sse",
              eval_every=50, progress=False)
    assert h.diverged and 1 <= h.diverged_at < 50
    assert h.steps == h.diverged_at == len(h.train_loss)
    assert not np.isfinite(h.train_loss[-1]) and np.isfinite(h.train_loss[:-1]).all()
    assert list(h.eval_steps) == [0]
    # the loop ran on to the evaluation point at step 50: the throughput counts those 50 steps
    assert h.examples_per_s * h.seconds / len(x) == pytest.approx(50)


def test_full_batch_gradient_descent_matches_hand_update():
    g = torch.Generator().manual_seed(0)
    x, a = torch.randn(50, 10, generator=g), torch.randn(10, 10, generator=g)
    data = Data("dln", x, x @ a.T, x, x @ a.T)
    torch.manual_seed(0)
    net = DLN(depth=2)
    w1, w2 = (layer.linear.weight.detach().clone().requires_grad_() for layer in net.layers)
    lr = 1e-3
    for _ in range(3):
        loss = ((x @ w1.T @ w2.T - x @ a.T) ** 2).sum()
        g1, g2 = torch.autograd.grad(loss, (w1, w2))
        w1, w2 = (w1 - lr * g1).detach().requires_grad_(), (w2 - lr * g2).detach().requires_grad_()
    h = train(net, data, steps=3, lr=lr, batch_size=None, loss="sse", progress=False)
    assert torch.allclose(net.layers[0].linear.weight, w1, atol=1e-5)
    assert torch.allclose(net.layers[1].linear.weight, w2, atol=1e-5)
    assert np.isnan(h.train_acc).all() and h.test_loss[-1] < h.test_loss[0]


def test_probe_is_stacked_over_eval_points_and_does_not_change_training():
    data = blobs()
    probe = ActivationProbe(data.x_test[:50], layers=(1, 2), units=4, values=30, train_mode=True)
    _, h = run("noisy_bn", probe=probe)
    assert set(h.probes) == {"pre1", "post1", "pre2", "post2"}
    assert h.probes["post2"].shape == (4, 4, 30)
    assert np.array_equal(h.train_loss, run("noisy_bn")[1].train_loss)


def test_checkpoint_resume_gives_the_uninterrupted_run(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    _, full = run("noisy_bn", steps=100)

    def crash_at_80(model):
        if len(calls) == 4:  # evaluations at 0, 20, 40, 60 went fine
            raise KeyboardInterrupt
        calls.append(1)
        return {}
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run("noisy_bn", steps=100, probe=crash_at_80, checkpoint=ckpt, checkpoint_every=40)
    assert ckpt.exists()
    _, resumed = run("noisy_bn", steps=100, checkpoint=ckpt, checkpoint_every=40)
    for field in ("train_loss", "train_acc", "eval_steps", "test_acc"):
        assert np.array_equal(getattr(full, field), getattr(resumed, field))


def test_cached_train_computes_once():
    built = []

    def build():
        built.append(1)
        return MLP(12, hidden=(8,), n_classes=3)
    kw = dict(steps=20, lr=0.1, batch_size=16, eval_every=10, progress=False)
    a = cached_train("t", {"model": "mlp8"}, build, blobs(), **kw)
    b = cached_train("t", {"model": "mlp8"}, build, blobs(), **kw)
    assert len(built) == 1 and np.array_equal(a.train_loss, b.train_loss)
    cached_train("t", {"model": "mlp8"}, build, blobs(), **(kw | {"lr": 0.2}))
    assert len(built) == 2


def test_evaluate_keeps_mode_and_matches_manual_accuracy():
    net, _ = run(steps=20)
    net.train()
    data = blobs()
    loss, acc = evaluate(net, data, batch_size=7)
    assert net.training
    net.eval()
    with torch.no_grad():
        out = net(data.x_test)
    assert acc == pytest.approx((out.argmax(1) == data.y_test).float().mean().item())
    expected = torch.nn.functional.cross_entropy(out, data.y_test).item()
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kw, match", [
    (dict(lr=-0.1), "lr must be a positive"),
    (dict(steps=0), "steps must be a positive"),
    (dict(batch_size=10_000), "batch_size must be None"),
    (dict(loss="mse"), "allowed: cross_entropy, sse"),
])
def test_bad_arguments_raise_before_work(kw, match):
    with pytest.raises(ValueError, match=match):
        run(**kw)


def test_bf16_autocast_and_channels_last_run_and_learn():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 2
    x = (torch.rand(96, 3, 32, 32, generator=g) * 100).to(torch.uint8)
    x[y == 1, 0] += 120  # class 1 is redder
    data = Data("tiny-images", x[:64], y[:64], x[64:], y[64:], classes=("a", "b"),
                mean=torch.full((3,), 0.3), std=torch.full((3,), 0.3))
    torch.manual_seed(0)
    net = VGG("A", width=0.0625, head=(8,), n_classes=2, norm="bn")
    h = train(net, data, steps=30, lr=0.05, batch_size=16, eval_every=10, amp=True,
              channels_last=True, progress=False)
    assert not h.diverged and h.test_acc[-1] > 0.9
    assert net.layers[0].linear.weight.is_contiguous(memory_format=torch.channels_last)


def test_steps_to_is_the_first_evaluation_at_the_threshold():
    h = History(train_loss=np.zeros(30), train_acc=np.zeros(30),
                eval_steps=np.array([0, 10, 20, 30]), test_acc=np.array([0.1, 0.6, 0.5, 0.9]),
                test_loss=np.zeros(4))
    assert steps_to(h, 0.55) == 10 and steps_to(h, 0.9) == 30 and steps_to(h, 0.1) == 0
    assert steps_to(h, 0.95) is None


def test_final_accuracy_over_the_last_window():
    h = History(train_loss=np.zeros(10), train_acc=np.arange(10) / 10,
                eval_steps=np.array([0, 5, 10]), test_loss=np.zeros(3),
                test_acc=np.array([0.1, 0.4, 0.8]), steps=10)
    assert final_accuracy(h, 4) == pytest.approx(np.mean([0.6, 0.7, 0.8, 0.9]))
    assert final_accuracy(h, 5, "test") == pytest.approx(np.mean([0.4, 0.8]))
    assert final_accuracy(h, 4, "test") == pytest.approx(0.8)
    h.diverged_at = 7
    assert np.isnan(final_accuracy(h, 4))
    with pytest.raises(ValueError, match="allowed: train, test"):
        final_accuracy(h, 4, "valid")


class CountingProbe:
    """A step probe that takes the step's gradient and one more functional evaluation."""

    def __init__(self, every):
        self.every, self.seen = every, []

    def __call__(self, step):
        from bnutils.core.probes import loss_and_grad

        loss, g = step.gradient()
        loss2, _ = loss_and_grad(step.model, step.x, step.y, at=step.stepped(step.lr))
        self.seen.append(step.t)
        return {"loss": loss, "loss_after": loss2}


@pytest.mark.parametrize("norm", ["bn", "noisy_bn"])
def test_step_probes_leave_the_run_bit_identical(norm):
    probe = CountingProbe(every=7)
    net_a, a = run(norm=norm, steps=40)
    net_b, b = run(norm=norm, steps=40, step_probes=[probe])
    assert np.array_equal(a.train_loss, b.train_loss) and np.array_equal(a.test_acc, b.test_acc)
    for p, q in zip(net_a.state_dict().values(), net_b.state_dict().values()):
        assert torch.equal(p, q)
    assert probe.seen == [0, 7, 14, 21, 28, 35]
    assert list(b.measure_steps["loss"]) == probe.seen and b.measures["loss"].shape == (6,)
    # the probe's loss at step t is the loss the step itself recorded
    np.testing.assert_allclose(b.measures["loss"], b.train_loss[probe.seen], rtol=1e-6)
    assert b.probe_seconds > 0 and not a.measures


def test_step_probes_survive_a_resume(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    net_full, full = run(steps=60, step_probes=[CountingProbe(every=10)])
    run(steps=40, step_probes=[CountingProbe(every=10)], checkpoint=ckpt, checkpoint_every=20)
    _, resumed = run(steps=60, step_probes=[CountingProbe(every=10)], checkpoint=ckpt,
                     checkpoint_every=20)
    assert list(resumed.measure_steps["loss"]) == [0, 10, 20, 30, 40, 50]
    np.testing.assert_array_equal(resumed.measures["loss"], full.measures["loss"])
