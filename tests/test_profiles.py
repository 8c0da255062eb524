import pytest
import torch

from bnutils.profiles import CHAPTERS, PROFILES, configure, resolve_device, resolve_profile


def test_auto_profile_follows_cuda():
    assert resolve_profile("auto") == ("full" if torch.cuda.is_available() else "quick")
    assert resolve_profile("quick") == "quick" and resolve_profile("full") == "full"


@pytest.mark.parametrize("bad", ["fast", "QUICK", "", None])
def test_unknown_profile_names_the_allowed_ones(bad):
    with pytest.raises(ValueError, match="allowed: quick, full, auto"):
        resolve_profile(bad)


def test_unknown_device():
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_every_chapter_resolves_both_profiles(chapter):
    for profile in ("quick", "full"):
        cfg = configure(chapter, profile=profile, device="cpu")
        assert cfg.profile == profile
        assert cfg.as_dict()["chapter"] == chapter
        for name, value in getattr(CHAPTERS[chapter], profile).items():
            assert getattr(cfg, name) == value


def test_overrides_and_none_take_profile_values():
    chapter = next(iter(CHAPTERS))
    knob, value = next((k, v) for k, v in CHAPTERS[chapter].quick.items()
                       if isinstance(v, int) and not isinstance(v, bool))
    cfg = configure(chapter, profile="quick", device="cpu", **{knob: value + 1})
    assert getattr(cfg, knob) == value + 1
    cfg = configure(chapter, profile="quick", device="cpu", **{knob: None})
    assert getattr(cfg, knob) == value


def test_bad_values_fail_with_clear_messages():
    with pytest.raises(ValueError, match="lr must be positive"):
        configure("01", profile="quick", lr=-0.1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        configure("01", profile="quick", steps=1.5)
    with pytest.raises(ValueError, match="allowed: auto, mnist, digits"):
        configure("01", profile="quick", dataset="cifar100")
    with pytest.raises(ValueError, match="no parameter.*learning_rate"):
        configure("01", profile="quick", learning_rate=0.1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        configure("01", profile="quick", seed=-1)
    with pytest.raises(ValueError, match="unknown chapter '99'"):
        configure("99")


def test_profiles_tuple():
    assert PROFILES == ("quick", "full", "auto")


def test_condition_numbers_are_checked():
    with pytest.raises(ValueError, match="kappa must be a condition number >= 1"):
        configure("05", profile="quick", kappa=0.5)
    with pytest.raises(ValueError, match="kappas must be a condition number"):
        configure("04", profile="quick", kappas=[10, -3])
