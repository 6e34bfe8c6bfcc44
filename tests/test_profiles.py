import dataclasses

import pytest

from fkdlib.errors import ConfigError
from fkdlib.profiles import PROFILES, Profile, get_profile


def test_three_presets_exist_and_are_named_after_their_key():
    assert set(PROFILES) == {"smoke", "default", "paper"}
    for name, profile in PROFILES.items():
        assert profile.name == name


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ConfigError) as excinfo:
        get_profile("defualt")
    message = str(excinfo.value)
    assert "defualt" in message
    for name in ("smoke", "default", "paper"):
        assert name in message


def test_overrides_change_only_the_named_fields():
    base = get_profile("default")
    changed = get_profile("default", epochs=3)
    assert changed.epochs == 3
    assert base.epochs != 3 or base is not changed
    different = {f.name for f in dataclasses.fields(Profile)
                 if getattr(base, f.name) != getattr(changed, f.name)}
    assert different <= {"epochs"}


def test_unknown_override_is_refused_with_the_valid_fields():
    with pytest.raises(ConfigError, match="epochz"):
        get_profile("smoke", epochz=3)


def test_profiles_grow_from_smoke_to_paper():
    smoke, default, paper = (PROFILES[n] for n in ("smoke", "default", "paper"))
    for field in ("train_identities", "test_identities", "resolution", "seeds"):
        assert getattr(smoke, field) <= getattr(default, field) <= getattr(paper, field), field

    def steps(p):  # an epoch of 10,000 identities is not an epoch of 250: count SGD steps
        return p.epochs * p.train_identities * p.train_images_per_identity // p.batch_size

    assert steps(smoke) < steps(default) < steps(paper)
    assert not smoke.assess_claims and default.assess_claims
    assert (smoke.seeds, default.seeds) == (1, 3)


def test_profile_fields_are_checked():
    with pytest.raises(ConfigError, match="seeds must be an integer >= 1, got 0"):
        get_profile("default", seeds=0)
    with pytest.raises(ConfigError, match="warmup_epochs must be >= 0"):
        get_profile("default", warmup_epochs=-1.0)


def test_profile_passes_through_get_profile():
    profile = get_profile("smoke")
    assert get_profile(profile) is profile
    assert get_profile(profile, epochs=2).epochs == 2


def test_protocol_sizes_are_a_scale_of_the_real_benchmarks():
    fields = {f.name for f in dataclasses.fields(Profile)}
    assert "protocol_scale" in fields and "verification_pairs_per_fold" not in fields
    assert PROFILES["default"].protocol_scale == PROFILES["paper"].protocol_scale == 1.0
    assert 0 < PROFILES["smoke"].protocol_scale < 0.05
    assert PROFILES["default"].test_identities >= 1000
    assert PROFILES["paper"].test_identities >= 1000
