"""Supernet training: runs, checkpoints atomically, resumes, reuses a finished supernet by config hash."""

import dataclasses

import pytest
import torch

from compress._safeio import is_pickle, load_state
from compress.data import SceneConfig, load_data
from compress.errors import ConfigError, RunError
from compress.model import default_space
from compress.training import TrainConfig, load_supernet, resize_batch, train_supernet


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    scenes = SceneConfig(num_train=24, num_val=8, image_size=64)
    train, _ = load_data("builtin", resolution=64, cache_dir=cache, progress=False, scenes=scenes)
    space = default_space(num_classes=train.num_classes)
    small = dataclasses.replace(
        space,
        resolutions=(64,),
        stages=tuple(
            dataclasses.replace(s, widths=s.widths[:2], depths=s.depths[:2], kernels=(3,))
            for s in space.stages
        ),
    )
    return train, small


def _config(**kw):
    return TrainConfig(
        **{"steps": 4, "batch_size": 8, "resolution": 64, "warmup_steps": 1, "checkpoint_every": 2, **kw}
    )


def test_train_saves_and_reuses(tiny, tmp_path):
    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    result = train_supernet(space, train, out, config=_config(), progress=False)
    assert out.is_file() and not result.reused and len(result.history) == 4
    assert not (tmp_path / "supernet.safetensors.ckpt").exists()
    again = train_supernet(space, train, out, config=_config(), progress=False)
    assert again.reused and again.config_hash == result.config_hash
    loaded = load_supernet(out)
    spec = space.largest()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x, spec)["tags"], result.supernet.eval()(x, spec)["tags"], atol=1e-5)


def test_reuse_clears_its_own_leftover_checkpoint_and_keeps_another_recipes(tiny, tmp_path):
    """A kill between saving the finished supernet and removing its checkpoint leaves the checkpoint; the next
    run reuses the supernet and clears it. A checkpoint of another recipe is someone's unfinished training."""
    from compress.training import _save_atomic, config_hash

    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    ckpt = tmp_path / "supernet.safetensors.ckpt"
    result = train_supernet(space, train, out, config=_config(), progress=False)
    _save_atomic({"config_hash": result.config_hash, "step": 4}, ckpt)
    assert train_supernet(space, train, out, config=_config(), progress=False).reused
    assert not ckpt.exists()
    other = config_hash(space, "", _config(lr=1e-3))
    _save_atomic({"config_hash": other, "step": 2}, ckpt)
    assert train_supernet(space, train, out, config=_config(), progress=False).reused
    assert load_state(ckpt)["config_hash"] == other


def test_changed_recipe_retrains(tiny, tmp_path):
    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    first = train_supernet(space, train, out, config=_config(), progress=False)
    second = train_supernet(space, train, out, config=_config(lr=1e-3), progress=False)
    assert not second.reused and second.config_hash != first.config_hash


def test_resume_from_checkpoint(tiny, tmp_path, monkeypatch):
    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    import compress.training as training

    real = training._save_atomic
    calls = {"n": 0}

    def crash_after_first_checkpoint(obj, path):
        real(obj, path)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C after step 2

    monkeypatch.setattr(training, "_save_atomic", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(space, train, out, config=_config(), progress=False)
    monkeypatch.setattr(training, "_save_atomic", real)
    ckpt = load_state(tmp_path / "supernet.safetensors.ckpt")
    assert ckpt["step"] == 2
    resumed = train_supernet(space, train, out, config=_config(), progress=False)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]


def test_corrupt_supernet_file(tmp_path):
    bad = tmp_path / "supernet.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="supernet .*supernet.safetensors is corrupt"):
        load_supernet(bad)
    with pytest.raises(RunError, match="no supernet"):
        load_supernet(tmp_path / "missing.safetensors")


def test_resize_batch_scales_boxes():
    batch = {
        "images": torch.rand(1, 3, 64, 64),
        "saliency": torch.ones(1, 1, 64, 64),
        "boxes": torch.tensor([[[8.0, 8.0, 32.0, 32.0]]]),
    }
    out = resize_batch(batch, 32)
    assert out["images"].shape[-1] == 32 and out["saliency"].shape[-1] == 32
    assert torch.equal(out["boxes"], batch["boxes"] / 2)


@pytest.mark.parametrize(
    ("kw", "match"), [({"steps": 0}, "steps"), ({"lr": 2.0}, "lr"), ({"resolution": 8}, "resolution")]
)
def test_bad_train_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_supernet_and_checkpoint_are_not_pickles(tiny, tmp_path):
    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    train_supernet(space, train, out, config=_config(steps=2, checkpoint_every=1), progress=False)
    assert not is_pickle(out)
    legacy = tmp_path / "supernet.pt"
    torch.save({"format": 1, "model": {}}, legacy)  # what older releases wrote
    with pytest.raises(RunError, match=r"torch pickle written by an older release.*retrain") as info:
        load_supernet(legacy)
    assert "\n" not in str(info.value)


def test_corrupt_checkpoint_trains_from_the_start(tiny, tmp_path):
    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    ckpt = tmp_path / "supernet.safetensors.ckpt"
    ckpt.write_bytes(b"\x00garbage, as a kill during a copy leaves it")
    result = train_supernet(space, train, out, config=_config(steps=2), progress=False)
    assert [h["step"] for h in result.history] == [1, 2] and out.is_file() and not ckpt.exists()
    torch.save({"step": 1}, ckpt)  # an older release's pickled checkpoint is never unpickled
    again = train_supernet(space, train, out, config=_config(steps=2, lr=1e-3), progress=False)
    assert [h["step"] for h in again.history] == [1, 2]


def test_joint_phase_trains_every_head_module_about_equally(tiny, tmp_path, monkeypatch):
    """The largest and smallest subnets rotate their branch points, so no head module is starved (the middle
    branches were, and the search then avoided them for it)."""
    import collections

    import compress.training as training

    train, space = tiny
    used: collections.Counter = collections.Counter()

    def record(net, space_, batch, specs, *, joint, config, autocast):
        assert joint
        for spec in specs[:2]:  # the fixed pair; the random subnets are uniform by construction
            used.update(f"{h.task}_{h.branch}" for h in spec.heads)
        return {}, len(batch["images"])

    monkeypatch.setattr(training, "_sandwich_backward", record)
    steps = 6  # a multiple of every head's number of branches (2 and 3)
    train_supernet(space, train, tmp_path / "s.safetensors", config=_config(steps=steps, joint_fraction=1.0),
                   progress=False)  # fmt: skip
    for h in space.heads:
        counts = [used[f"{h.task}_{b}"] for b in h.branches]
        assert counts == [2 * steps // len(h.branches)] * len(h.branches), (h.task, counts)
    assert all(s.stages == space.largest().stages for s in [training.rotate_heads(space, space.largest(), 1)])


def _saved_tensors_and_grads(space, *, checkpointing: bool) -> tuple[int, list[torch.Tensor]]:
    from compress.model import Supernet

    torch.manual_seed(0)
    net = Supernet(space).train()
    net.grad_checkpoint = checkpointing
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += 1
        return t

    x = torch.rand(2, 3, 64, 64)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(x, space.largest())
    sum(v.float().mean() for v in out.values()).backward()
    return saved, [p.grad.clone() for p in net.stem.parameters() if p.grad is not None]


def test_gradient_checkpointing_keeps_fewer_activations_and_the_same_gradients(tiny):
    _, space = tiny
    plain_saved, plain_grads = _saved_tensors_and_grads(space, checkpointing=False)
    ckpt_saved, ckpt_grads = _saved_tensors_and_grads(space, checkpointing=True)
    assert ckpt_saved < plain_saved / 2  # only each block's input is kept, not its intermediates
    assert len(ckpt_grads) == len(plain_grads) > 0
    for a, b in zip(ckpt_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_grad_checkpoint_recipe_switches_it_on_without_changing_the_supernet_identity(tiny, tmp_path):
    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    result = train_supernet(space, train, out, config=_config(steps=2, grad_checkpoint=True), progress=False)
    assert result.supernet.grad_checkpoint
    again = train_supernet(space, train, out, config=_config(steps=2), progress=False)
    assert again.reused  # a memory setting, not a recipe: the same supernet


def test_a_time_limit_fixes_the_step_count_after_its_probe_and_a_resume_keeps_it(tiny, tmp_path, monkeypatch):
    """Out of time at the probe's end: half the recipe's steps (the floor), under the hash of that shorter
    recipe. A checkpoint carries the count, so a resume with all the time in the world still ends there; a
    later time-limited call reuses the short supernet, a call without a limit trains the whole recipe."""
    import compress.training as training
    from compress.training import MIN_STEP_FRACTION, PROBE, config_hash

    train, space = tiny
    out = tmp_path / "supernet.safetensors"
    config = _config(steps=24, checkpoint_every=PROBE[1] + 1)
    real, calls = training._save_atomic, {"n": 0}

    def crash_after_first_checkpoint(obj, path):
        real(obj, path)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_save_atomic", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(space, train, out, config=config, progress=False, time_limit_s=0.0)
    monkeypatch.setattr(training, "_save_atomic", real)
    half = int(24 * MIN_STEP_FRACTION)
    assert load_state(tmp_path / "supernet.safetensors.ckpt")["total"] == half
    cut = train_supernet(space, train, out, config=config, progress=False, time_limit_s=1e6)
    assert (cut.steps, cut.planned_steps) == (half, 24)
    assert [h["step"] for h in cut.history] == list(range(1, half + 1))
    assert cut.config_hash == config_hash(space, "", dataclasses.replace(config, steps=half))
    again = train_supernet(space, train, out, config=config, progress=False, time_limit_s=5.0)
    assert again.reused and again.config_hash == cut.config_hash and again.steps == half
    whole = train_supernet(space, train, out, config=config, progress=False)
    assert not whole.reused and whole.steps == 24 == len(whole.history)
    assert whole.config_hash == config_hash(space, "", config)


def test_a_time_limit_that_holds_the_recipe_changes_nothing(tiny, tmp_path):
    train, space = tiny
    config = _config(steps=14)
    free = train_supernet(space, train, tmp_path / "a.safetensors", config=config, progress=False)
    timed = train_supernet(space, train, tmp_path / "b.safetensors", config=config, progress=False,
                           time_limit_s=1e6)  # fmt: skip
    assert timed.steps == free.steps == 14 and timed.config_hash == free.config_hash
    assert timed.history == free.history


@pytest.mark.parametrize(
    "done, left, per_step, expected",
    [
        (10, 100.0, 1.0, 110),
        (10, 1000.0, 1.0, 200),
        (10, 5.0, 1.0, 100),
        (10, -3.0, 1.0, 100),
        (150, 0.0, 1.0, 150),
    ],
)
def test_steps_that_fit(done, left, per_step, expected):
    from compress.training import steps_that_fit

    assert steps_that_fit(200, done, left, per_step) == expected
