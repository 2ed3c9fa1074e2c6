import pytest
from hypothesis import given
from hypothesis import strategies as st

from compress.errors import ConfigError
from search.units import parse_duration_ms, parse_size_mb


@pytest.mark.parametrize(
    ("text", "ms"), [("10ms", 10.0), ("9.7 ms", 9.7), ("0.01s", 10.0), ("500us", 0.5), (" 3 MS ", 3.0)]
)
def test_durations(text, ms):
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("text", "mb"), [("25MB", 25.0), ("0.5GB", 500.0), ("512 kb", 0.512), ("1MiB", 1.048576)]
)
def test_sizes(text, mb):
    assert parse_size_mb(text) == pytest.approx(mb)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("10 parsecs", "unknown unit 'parsecs'"),
        ("-3ms", "must be positive"),
        ("0ms", "must be positive"),
        ("10", "has no unit"),
        ("fast", "cannot read"),
        ("", "cannot read"),
        ("nanms", "cannot read"),
    ],
)
def test_bad_durations(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_duration_ms(text)


def test_bare_number_is_rejected():
    with pytest.raises(ConfigError, match="needs a unit"):
        parse_duration_ms(10)  # type: ignore[arg-type]


@given(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False), st.sampled_from(["ms", "s", "us"]))
def test_duration_round_trip(value, unit):
    factor = {"ms": 1.0, "s": 1000.0, "us": 1e-3}[unit]
    assert parse_duration_ms(f"{value!r}{unit}") == pytest.approx(value * factor)


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_config_error(text):
    try:
        assert parse_duration_ms(text) > 0
    except ConfigError as exc:
        assert "\n" not in str(exc)
