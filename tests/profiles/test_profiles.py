"""Device profiles as data: loading, schema errors naming file and key, round trip, registry."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

import profiles
from profiles import ProfileError, list_profiles, load_profile
from profiles._schema import dump_profile, parse_profile

DEVICES = list_profiles()
A16 = (Path(profiles.__file__).parent / "devices" / "a16.toml").read_text()


def test_list_profiles_names_every_device_class():
    assert DEVICES == ["a11", "a12", "a13", "a14", "a15", "a16", "a17pro", "m1", "m2", "m3", "m4"]


@pytest.mark.parametrize("name", DEVICES)
def test_every_shipped_profile_loads_and_round_trips(name):
    p = load_profile(name)
    assert p.name == name
    assert parse_profile(dump_profile(p), where="x") == p
    assert p.basis in ("calibrated", "spec-derived")
    for unit in p.units.values():
        assert unit.bandwidth_gbs.source and unit.cores.source
        assert all(s.value > 0 and s.source for s in unit.peak_gflops.values())
    assert p.ram_gb.source


@pytest.mark.parametrize("name", DEVICES)
def test_neural_engine_present_except_on_a11(name):
    assert load_profile(name).has_ane == (name != "a11")


def test_calibrated_profiles_carry_their_error():
    p = load_profile("a16")
    assert p.basis == "calibrated"
    assert p.calibration.loo_median_abs_pct is not None
    assert p.calibration.rows and all(r.measured_ms > 0 for r in p.calibration.rows)
    assert load_profile("a15").basis == "spec-derived"


def test_unknown_device_names_known_ones():
    with pytest.raises(
        ProfileError, match=r"unknown device 'a99'; known: a11, a12, .*m4.*compress profile list"
    ):
        load_profile("a99")


def test_names_are_normalised():
    assert load_profile("A17 Pro").name == "a17pro"
    assert load_profile("a17-pro") is load_profile("a17pro")


def test_missing_host_profile_says_how_to_measure(monkeypatch, tmp_path):
    monkeypatch.setattr(profiles._registry, "host_profile_path", lambda: tmp_path / "host.toml")
    with pytest.raises(ProfileError, match="compress profile measure"):
        load_profile("host")


def test_load_by_path_and_passthrough(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(A16)
    p = load_profile(path)
    assert p.name == "a16" and load_profile(p) is p


def _broken(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_and_key(tmp_path):
    path = _broken(tmp_path, A16.replace('chip = "A16"', 'chip = "A16"\nflavour = "sweet"'))
    with pytest.raises(ProfileError, match=r"broken\.toml: \(top level\): unknown key\(s\) \['flavour'\]"):
        load_profile(path)


def test_unknown_key_in_unit_table(tmp_path):
    path = _broken(tmp_path, A16.replace("[units.ane]\n", "[units.ane]\nturbo = true\n"))
    with pytest.raises(ProfileError, match=r"broken\.toml: units\.ane: unknown key\(s\) \['turbo'\]"):
        load_profile(path)


def test_bad_value_names_key_and_value(tmp_path):
    text = A16.replace("bandwidth_gbs = { value = 51.2,", "bandwidth_gbs = { value = -3,", 1)
    with pytest.raises(ProfileError, match=r"units\.cpu\.bandwidth_gbs\.value: must be > 0, but got -3"):
        load_profile(_broken(tmp_path, text))


def test_efficiency_above_one_is_rejected(tmp_path):
    text = re.sub(r"\nefficiency = \{ [^}]*\}", "\nefficiency = { conv = 7.0, default = 0.5 }", A16, count=1)
    with pytest.raises(
        ProfileError, match=r"units\.cpu\.costs\.efficiency: fractions of peak must lie in \(0, 1\]"
    ):
        load_profile(_broken(tmp_path, text))


def test_unknown_op_class_is_rejected(tmp_path):
    text = A16.replace("mem_efficiency = { default", "mem_efficiency = { warp = 1.0, default", 1)
    with pytest.raises(ProfileError, match=r"mem_efficiency: unknown key\(s\) \['warp'\]"):
        load_profile(_broken(tmp_path, text))


def test_missing_source_is_rejected(tmp_path):
    text = A16.replace(
        'ram_gb = { value = 6.0, source = "[R] 6 GB; shared/reference/apple-devices.md §3" }', "ram_gb = 6.0"
    )
    with pytest.raises(ProfileError, match=r"ram_gb: must be \{ value = \.\.\., source = .* needs a source"):
        load_profile(_broken(tmp_path, text))


def test_corrupt_toml_names_the_file(tmp_path):
    with pytest.raises(ProfileError, match=r"broken\.toml: not valid TOML"):
        load_profile(_broken(tmp_path, "name = [unclosed\n"))


def test_unknown_fallback_rule_and_unit(tmp_path):
    text = A16.replace('ane_fallbacks = ["dilated_conv"', 'ane_fallbacks = ["teleport"')
    with pytest.raises(ProfileError, match=r"ane_fallbacks\[0\]: must be one of"):
        load_profile(_broken(tmp_path, text))
    text = A16.replace("[units.ane]", "[units.npu]").replace("[units.ane.costs]", "[units.npu.costs]")
    with pytest.raises(ProfileError, match=r"units\.npu: unknown compute unit 'npu'"):
        load_profile(_broken(tmp_path, text))


def test_replace_keeps_profiles_usable():
    p = load_profile("a16")
    q = replace(p, name="mine")
    assert q.tables["ane"]["eff"].shape == p.tables["ane"]["eff"].shape
