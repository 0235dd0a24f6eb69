"""The teacher cache (kdtune.training.teacher_cache): the stored outputs equal the teacher's on any padded
batch, training with and without it is the same, a second trial reuses the first's, and a write
killed before its marker is never read."""

from __future__ import annotations

import pytest
import torch

import kdtune.training.teacher_cache as teacher_cache
from kdtune.config import make_trial

TRIAL = {
    "dataset": "synthetic", "base_model": "preset:micro", "kd": True, "hidden": 16, "max_steps": 10,
    "batch_size": 16, "lr": 1e-3, "eval_steps": 5, "log_steps": 1, "max_length": 32, "teacher_max_steps": 10,
    "teacher_batch_size": 64, "teacher_eval_steps": 10,
}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, kdtune_cache):
    from kdtune.training.teacher_store import ensure_teacher

    return ensure_teacher(make_trial(TRIAL), tmp_path_factory.mktemp("store"), log=lambda m: None)


def build(teacher_dir, **fields):
    import kdtune.training.trial as trial_lib

    return trial_lib.build(make_trial({**TRIAL, **fields}), teacher_dir)


def train_curve(built):
    """Every loss term at every step, and the outcome."""
    import kdtune.training.trial as trial_lib
    from kdtune.training.loop import Callbacks

    curve = []
    outcome = trial_lib.run(built, CPU, Callbacks(on_log=lambda step, logs: curve.append(logs)))
    return curve, outcome


@pytest.mark.parametrize("target", ["probs", "scores"])
def test_cached_outputs_equal_the_teachers_on_a_differently_padded_batch(teacher_dir, target):
    """The cache is written in length-sorted batches of 64; read back for a training batch (other
    rows, other padding) it must give what the teacher computes on that very batch."""
    built = build(teacher_dir, att_target=target, teacher_cache=True, seed=3)
    assert teacher_cache.attach(built, CPU) in ("built", "reused")
    cache, d = built.distiller.teacher_cache, built.distiller
    batch = next(iter(built.inputs.train_loader(0)))
    mask = batch["attention_mask"]
    assert mask.sum(-1).min() < mask.shape[1]  # the batch is padded
    got = cache.outputs(batch["row"], mask, CPU)
    with torch.inference_mode():
        want = d.teacher(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True,
                         output_attentions=True)
    from kdtune.models.attention import attention_by_layer

    maps = attention_by_layer(d.teacher, want.attentions)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
    real = mask.bool()
    assert sorted(got.hidden_states) == [0] + [k + 1 for k in d.layer_map]
    for i, h in got.hidden_states.items():
        torch.testing.assert_close(h[real], want.hidden_states[i][real], rtol=1e-5, atol=1e-5)
        assert not h[~real].any()  # padding: zeros, never read by the masked losses
    pair = real[:, None, :, None] & real[:, None, None, :]
    assert sorted(got.attentions) == sorted(set(d.layer_map))
    for k, a in got.attentions.items():
        assert a.shape == maps[k].shape
        torch.testing.assert_close(a[pair.expand_as(a)], maps[k][pair.expand_as(a)], rtol=1e-5, atol=1e-5)


def test_training_is_the_same_with_and_without_the_cache_and_a_second_trial_reuses_it(teacher_dir, monkeypatch):
    plain_curve, plain = train_curve(build(teacher_dir, teacher_cache=False))
    assert plain.teacher_cache == "off"
    before = dict(teacher_cache.COUNTS)
    cached_built = build(teacher_dir, teacher_cache=True)
    cached_curve, cached = train_curve(cached_built)
    assert cached.teacher_cache in ("built", "reused")
    assert len(cached_curve) == len(plain_curve) == TRIAL["max_steps"]
    for a, b in zip(plain_curve, cached_curve):
        for term in ("total", "att", "hid", "emb", "pred", "clf"):
            assert b[term] == pytest.approx(a[term], rel=1e-4, abs=1e-6), term
    assert cached.best_val == pytest.approx(plain.best_val)

    # Another trial on the same rows (another seed and init: fraction 1 draws no rows) reads the
    # same cache and never runs the teacher while training.
    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran although the cache holds its outputs")

    import kdtune.training.loop

    monkeypatch.setattr(kdtune.training.loop, "teacher_outputs", no_teacher)
    _, second = train_curve(build(teacher_dir, teacher_cache=True, seed=2, init="scratch"))
    assert second.teacher_cache == "reused"
    assert teacher_cache.COUNTS["reused"] == before.get("reused", 0) + 1 + (cached.teacher_cache == "reused")


def test_the_key_covers_what_changes_the_stored_values(teacher_dir):
    def key(**fields):
        built = build(teacher_dir, **fields)
        rows = built.inputs.train_loader(0).dataset
        return teacher_cache.spec_for(built, rows, "fp32").key

    base = key()
    assert key(seed=2) == base  # at fraction 1 the seed draws no rows
    assert key(fraction=0.5, seed=1) != key(fraction=0.5, seed=2)
    for change in ({"att_target": "scores"}, {"max_length": 16}, {"w_att": 0.0}, {"layer_map": "first"},
                   {"train_partition": "english"}, {"languages": "english,latin"}):
        assert key(**change) != base, change
    # Another teacher over the very same rows (same tokenizer, same token ids): the teacher key
    # alone tells the caches apart.
    assert key(teacher_lr=1e-4) != base
    assert key(w_clf=0.5, lr=1e-4, hidden=None) == base  # student-side settings share it


def test_a_killed_write_is_never_read_and_the_next_trial_rebuilds(teacher_dir, monkeypatch):
    built = build(teacher_dir, teacher_cache=True, w_emb=0.0)  # a key of its own
    rows = built.inputs.train_loader(0).dataset
    folder = teacher_dir / teacher_cache.FOLDER / teacher_cache.spec_for(built, rows, "fp32").key

    class Killed(BaseException):
        pass

    def killed(folder, meta):
        raise Killed  # every array written, the marker not yet: what a kill at the worst moment leaves

    monkeypatch.setattr(teacher_cache, "_mark_done", killed)
    with pytest.raises(Killed):
        teacher_cache.attach(built, CPU)
    leftovers = list(folder.parent.glob(f".{folder.name}.tmp-*"))
    assert leftovers and (leftovers[0] / "hidden.npy").is_file()
    assert not folder.exists() and built.distiller.teacher_cache is None
    monkeypatch.undo()

    again = build(teacher_dir, teacher_cache=True, w_emb=0.0)
    assert teacher_cache.attach(again, CPU) == "built"
    assert not list(folder.parent.glob(f".{folder.name}.tmp-*"))  # the killed write was cleared
    assert teacher_cache.is_complete(folder)


def test_no_room_on_disk_runs_the_teacher(teacher_dir, monkeypatch):
    import shutil

    built = build(teacher_dir, teacher_cache=True, w_att=0.0)  # a key of its own
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 1000, 1000))
    lines = []
    assert teacher_cache.attach(built, CPU, lines.append).startswith("skipped: needs")
    assert built.distiller.teacher_cache is None and "running the teacher instead" in lines[0]


def test_estimate_matches_the_written_size(teacher_dir):
    built = build(teacher_dir, teacher_cache=True)
    teacher_cache.attach(built, CPU)
    cache = built.distiller.teacher_cache
    hidden, att = teacher_cache.needs(built.distiller)
    estimate = teacher_cache.estimate_bytes(cache.lengths, built.teacher.config, hidden, att)
    header = 128 * len(cache.arrays)  # each .npy file's header
    assert estimate == cache.bytes - header + cache.lengths.nbytes


def test_precision_fp32_means_full_fp32_on_cuda_and_the_cache_key_tells_it_from_tf32(monkeypatch):
    """`precision: fp32` is the paper's fp32: no TF32 products on CUDA. auto without bf16 runs the
    fp32 products on TF32 cores, so a cache written one way is not read the other way."""
    from kdtune.training.runtime import fast_matmul, uses_tf32

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # an fp32-only GPU
    assert uses_tf32(cuda, "auto") and not uses_tf32(cuda, "fp32") and not uses_tf32(cpu, "auto")
    before = torch.get_float32_matmul_precision()
    with fast_matmul(cuda, "fp32"):
        assert torch.get_float32_matmul_precision() == before == "highest"
    with fast_matmul(cuda, "auto"):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    regimes = {p: teacher_cache.compute_regime(cuda, p) for p in ("auto", "fp32", "bf16")}
    assert regimes == {"auto": "tf32", "fp32": "fp32", "bf16": "bf16"}
    assert teacher_cache.compute_regime(cpu, "auto") == teacher_cache.compute_regime(cpu, "fp32") == "fp32"


def test_bf16_trains_on_cpu_and_the_cache_keeps_bf16_bits_through_its_int16_view(teacher_dir):
    """The bf16 path (autocast, and the cache storing bf16 as int16 on disk) runs on a CPU too."""
    assert teacher_cache.compute_regime(CPU, "bf16") == "bf16" != teacher_cache.compute_regime(CPU, "auto")
    built = build(teacher_dir, precision="bf16", teacher_cache=True, att_target="scores", seed=5)
    curve, outcome = train_curve(built)
    assert outcome.teacher_cache in ("built", "reused") and len(curve) == TRIAL["max_steps"]
    assert all(torch.isfinite(torch.tensor(logs["total"])) for logs in curve)
    cache = built.distiller.teacher_cache
    assert cache.spec["compute"] == "bf16" and "bfloat16" in cache.dtypes.values()
    stored = next(n for n, d in cache.dtypes.items() if d == "bfloat16")
    assert str(cache.arrays[stored].dtype) == "int16"  # bf16 has no numpy dtype: its bits, as int16
    batch = next(iter(built.inputs.train_loader(0)))
    got = cache.outputs(batch["row"], batch["attention_mask"], CPU)
    from kdtune.training.runtime import autocast_for

    with torch.inference_mode(), autocast_for(CPU, "bf16"):
        want = built.distiller.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert got.logits.dtype == want.logits.dtype == torch.bfloat16
    torch.testing.assert_close(got.logits.float(), want.logits.float(), rtol=0.05, atol=0.05)
    bits = torch.randn(7, 3).to(torch.bfloat16)
    assert torch.equal(teacher_cache._torch(teacher_cache._np(bits), "bfloat16"), bits)
