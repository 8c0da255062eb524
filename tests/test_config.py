import pytest
import torch

from bnutils.chapters import bn_transform, decoupling, gdnp, ics
from bnutils.infra.config import ChapterProfiles, resolve_device, resolve_profile

CHAPTERS = [bn_transform.PROFILES, ics.PROFILES, decoupling.PROFILES, gdnp.PROFILES]


def test_auto_profile_follows_cuda():
    assert resolve_profile("auto") == ("full" if torch.cuda.is_available() else "quick")
    assert resolve_profile("quick") == "quick" and resolve_profile("full") == "full"


@pytest.mark.parametrize("bad", ["fast", "QUICK", "", None])
def test_unknown_profile_names_the_allowed_ones(bad):
    with pytest.raises(ValueError, match="allowed: quick, long, full, auto"):
        resolve_profile(bad)


def test_unknown_device():
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("profiles", CHAPTERS, ids=lambda p: p.chapter)
def test_every_chapter_resolves_both_profiles(profiles):
    for profile in ("quick", "long", "full"):
        cfg = profiles.configure(profile=profile, device="cpu")
        assert cfg.profile == profile
        assert cfg.as_dict()["chapter"] == profiles.chapter
        for name, value in getattr(profiles, profile).items():
            assert getattr(cfg, name) == value


def test_overrides_and_none_take_profile_values():
    p = bn_transform.PROFILES
    cfg = p.configure(profile="quick", device="cpu", steps=p.quick["steps"] + 1)
    assert cfg.steps == p.quick["steps"] + 1
    assert p.configure(profile="quick", device="cpu", steps=None).steps == p.quick["steps"]


def test_configure_from_a_parameters_cell():
    namespace = {"profile": "quick", "seed": 3, "device": "cpu", "lr": 0.05, "steps": None,
                 "unrelated": 1}
    cfg = bn_transform.PROFILES.configure_from(namespace)
    assert (cfg.seed, cfg.lr, cfg.steps) == (3, 0.05, bn_transform.PROFILES.quick["steps"])


def test_bad_values_fail_with_clear_messages():
    p = bn_transform.PROFILES
    with pytest.raises(ValueError, match="lr must be a positive number"):
        p.configure(profile="quick", lr=-0.1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        p.configure(profile="quick", steps=1.5)
    with pytest.raises(ValueError, match="allowed: auto, mnist, digits"):
        p.configure(profile="quick", dataset="cifar100")
    with pytest.raises(ValueError, match="no parameter.*learning_rate"):
        p.configure(profile="quick", learning_rate=0.1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        p.configure(profile="quick", seed=-1)
    # every problem is reported at once
    with pytest.raises(ValueError, match="steps must be .*; lr must be"):
        p.configure(profile="quick", lr=0, steps=0)


def test_condition_numbers_are_checked():
    with pytest.raises(ValueError, match="kappa must be a condition number >= 1"):
        gdnp.PROFILES.configure(profile="quick", kappa=0.5)
    with pytest.raises(ValueError, match="kappas must be a condition number >= 1"):
        decoupling.PROFILES.configure(profile="quick", kappas=[10, -3])


def test_profiles_must_name_the_same_knobs():
    with pytest.raises(ValueError, match="different knobs"):
        ChapterProfiles("99", "x", quick=dict(a=1), full=dict(b=1))
