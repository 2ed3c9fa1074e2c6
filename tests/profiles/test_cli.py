"""``compress profile`` in-process: list, show, measure --coreml (Linux), calibrate; errors propagate."""

from __future__ import annotations

import platform

import pytest
from torch import nn
from typer.testing import CliRunner

from compress.cli import profile as cli
from profiles import ProfileError, extract_graph, load_profile
from profiles._calibrate import predict_ms

runner = CliRunner()


def test_list_shows_every_device_with_error_column():
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    for name in ("a11", "a14", "a17pro", "m4", "held-out", "p10-p90", "ANE fp16 TOPS"):
        assert name in result.output


def test_show_prints_numbers_with_sources():
    result = runner.invoke(cli.app, ["show", "a15"])
    assert result.exit_code == 0, result.output
    assert "15800" in result.output and "Apple ML Research" in result.output
    for text in ("spec-derived", "leave-one-chip-out", "prediction interval"):
        assert text in result.output


def test_show_unknown_device_raises_profile_error():
    result = runner.invoke(cli.app, ["show", "a99"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ProfileError)
    assert "unknown device 'a99'" in str(result.exception)


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML runs on macOS")
def test_measure_coreml_is_refused_off_macos(tmp_path):
    result = runner.invoke(cli.app, ["measure", "--coreml", str(tmp_path / "m.mlpackage")])
    assert isinstance(result.exception, ProfileError)
    assert "only on macOS" in str(result.exception)


def test_calibrate_prints_leave_one_out_per_row(tmp_path):
    truth = load_profile("m1")
    lines = ["model,chip,weights,activations,input,latency_ms"]
    for width in (8, 16, 32):
        g = extract_graph(nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU()), (1, 3, 64, 64))
        lines.append(f"tiny{width},M1,fp16,fp16,64,{predict_ms(truth, g, 'fp16') * 1.3:.6f}")
    csv = tmp_path / "m.csv"
    csv.write_text("\n".join(lines) + "\n")
    # unknown models have no reference: the error names them
    result = runner.invoke(cli.app, ["calibrate", str(csv), "--device", "m1"])
    assert isinstance(result.exception, ProfileError) and "no reference model for 'tiny8'" in str(
        result.exception
    )
    real = tmp_path / "real.csv"
    real.write_text(
        "model,chip,weights,activations,input,latency_ms\n"
        "mobilenet_v3_small_1.0,M1,fp16,fp16,224,0.2\n"
        "mobilenet_v2_1.0,M1,fp16,fp16,224,0.6\n"
    )
    out = tmp_path / "m1.toml"
    result = runner.invoke(cli.app, ["calibrate", str(real), "--device", "m1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mobilenet_v2_1.0" in result.output and "median |error|" in result.output
    assert load_profile(out).basis == "calibrated"


def test_calibrate_out_path_with_rich_markup(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text(
        "model,chip,weights,activations,input,latency_ms\n"
        "mobilenet_v3_small_1.0,M1,fp16,fp16,224,0.2\n"
        "mobilenet_v2_1.0,M1,fp16,fp16,224,0.6\n"
    )
    folder = tmp_path / "team[" / "x]"  # the path reads "team[/x]": a closing tag rich would choke on
    folder.mkdir(parents=True)
    out = folder / "m1.toml"
    result = runner.invoke(cli.app, ["calibrate", str(real), "--device", "m1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "team[/x]" in result.output.replace("\n", "") and load_profile(out).basis == "calibrated"
    assert [p.name for p in folder.iterdir()] == ["m1.toml"]  # written via a temporary, renamed
