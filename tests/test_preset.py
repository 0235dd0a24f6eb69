"""Offline presets: tokenizer + small XLM-R + brief MLM, loadable with the Auto classes."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from pathlib import Path

import pytest

from kdtune import data
from kdtune.cli import main
from kdtune.errors import UsageError
from kdtune.models import preset
from kdtune.models.preset import PRESETS, build_preset, resolve_base_model


def _check_loadable(path: Path, spec) -> None:
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    assert tok.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) == [0, 1, 2, 3, 4]
    enc = tok(["hello there", "a much longer sentence to pad the first one"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0, 0] == tok.bos_token_id and (enc["input_ids"][0] == tok.pad_token_id).any()
    base = AutoModel.from_pretrained(path)
    assert type(base).__name__ == "XLMRobertaModel"
    cfg = base.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (
        spec.layers, spec.hidden, spec.heads, spec.intermediate,
    )  # fmt: skip
    assert cfg.vocab_size == len(tok) and cfg.pad_token_id == tok.pad_token_id
    clf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=5, attn_implementation="eager")
    with torch.no_grad():
        out = clf(**enc, output_attentions=True, output_hidden_states=True)
    assert out.logits.shape == (2, 5)
    assert len(out.hidden_states) == spec.layers + 1 and len(out.attentions) == spec.layers
    # Same weights as the MLM checkpoint: the encoder embeddings are the pretrained ones.
    assert torch.equal(
        clf.roberta.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight
    )


@pytest.fixture(scope="module")
def micro(kdtune_cache):
    return build_preset("micro", "synthetic")


def test_micro_preset_on_synthetic(micro, kdtune_cache, tmp_path, monkeypatch):
    path = micro
    assert path.parent == kdtune_cache / "presets" and path.name.startswith("micro-synthetic-")
    info = json.loads((path / "preset.json").read_text())
    assert info["dataset"] == "synthetic" and info["spec"]["layers"] == 4
    assert info["mlm_loss_end"] < info["mlm_loss_start"] - 0.5
    _check_loadable(path, PRESETS["micro"])
    # Cached by content: a second call (a new process: no in-memory memo) finds it without building.
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    with monkeypatch.context() as m:
        m.setattr(preset, "_BUILT", {})
        m.setattr(preset, "pretrain", lambda *a, **k: pytest.fail("a cached preset was built again"))
        assert build_preset("micro", "synthetic") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    # Deterministic: a fresh build elsewhere gives byte-identical tokenizer and weights.
    other = build_preset("micro", "synthetic", cache_dir=tmp_path)
    assert other.parent == tmp_path / "presets" and other.name == path.name
    for name in ("tokenizer.json", "model.safetensors"):
        assert (other / name).read_bytes() == (path / name).read_bytes(), name
    assert resolve_base_model("preset:micro", "synthetic") == str(path)
    assert resolve_base_model("xlm-roberta-base", "synthetic") == "xlm-roberta-base"
    assert resolve_base_model("/some/local/dir", "massive") == "/some/local/dir"


def test_synthetic_is_learnable_by_a_tiny_transformer(micro):
    """The synthetic data is learnable by a micro-sized XLM-R in a few epochs (chance is 1/8).

    Uses the preset's tokenizer and config with fresh weights, through encode/make_loader: the
    brief MLM of the micro preset does not make fine-tuning faster at this size (it is there to
    exercise the preset path quickly), so learnability is a property checked from scratch.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = micro
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and robust on a busy machine
    try:
        torch.manual_seed(0)
        tok = AutoTokenizer.from_pretrained(path)
        dd = data.load("synthetic")
        train = data.encode(dd["train"], tok, max_length=32)
        test = data.encode(dd["test"], tok, max_length=32)
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(path, num_labels=8))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for epoch in range(6):
            for batch in data.make_loader(train, tok, 16, shuffle=True, seed=epoch, group_by_length=True):
                model(**batch).loss.backward()
                opt.step()
                opt.zero_grad()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for batch in data.make_loader(test, tok, 64, shuffle=False):
                pred = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
                correct += int((pred == batch["labels"]).sum())
                total += len(pred)
    finally:
        torch.set_num_threads(threads)
    assert total == 576
    assert correct / total > 0.4, correct / total  # over 3x chance


def _build_in_subprocess(cache: str, queue) -> None:
    import os

    os.environ["KDTUNE_CACHE"] = cache
    from kdtune.models.preset import PresetSpec, build_preset

    spec = PresetSpec(vocab_size=500, hidden=16, layers=2, heads=2, intermediate=32, max_length=32,
                      mlm_steps=20, batch_size=16, lr=1e-3, seed=3)  # fmt: skip
    queue.put(str(build_preset(spec, "synthetic")))


def test_two_processes_build_once(tmp_path):
    """Both processes get the same folder; a second build would fail the atomic rename."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_subprocess, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    paths = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(paths) == 1
    presets = tmp_path / "presets"
    assert [p.name for p in presets.iterdir() if p.is_dir()] == [Path(paths.pop()).name]


def test_preset_cli_and_errors(micro, tmp_path, capsys):
    path = micro
    assert main(["preset", "micro", "--dataset", "synthetic", "--out", str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"preset micro for synthetic: {tmp_path / 'copy'}"
    info = json.loads((path / "preset.json").read_text())
    assert f"{info['mlm_loss_start']:.3f} -> {info['mlm_loss_end']:.3f}" in out[1]
    assert (tmp_path / "copy" / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()
    assert main(["preset", "huge", "--dataset", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert err == "kdtune: error: unknown preset 'huge'; choose one of tiny, small, micro, minilm, e5\n"
    assert main(["preset", "micro", "--dataset", "imdb"]) == 2
    assert "unknown dataset 'imdb'" in capsys.readouterr().err
    with pytest.raises(UsageError, match="unknown preset"):
        resolve_base_model("preset:nope", "synthetic")


@pytest.mark.slow
def test_tiny_preset_on_massive(shared_data, kdtune_cache):
    """The tiny shape (12 layers x 128) builds on real MASSIVE text and its MLM loss clearly drops.

    A short MLM schedule keeps CI cheap; tokenizer training and the model shape are the preset's
    own. The full 1000-step build's time is a speed fact for `kdtune preset tiny` to print, not a
    unit test's to assert (on 2 cores it takes about 10 minutes).
    """
    spec = dataclasses.replace(PRESETS["tiny"], mlm_steps=250)
    start = time.perf_counter()
    path = build_preset(spec, "massive", data_dir=shared_data)
    print(f"tiny shape on MASSIVE, {spec.mlm_steps} MLM steps: {time.perf_counter() - start:.0f} s")
    info = json.loads((path / "preset.json").read_text())
    assert info["spec"]["layers"] == 12 and info["spec"]["hidden"] == 128
    assert info["vocab_size"] == PRESETS["tiny"].vocab_size
    assert info["mlm_loss_end"] < info["mlm_loss_start"] - 1.0, info
    _check_loadable(path, PRESETS["tiny"])
    print(f"MLM loss {info['mlm_loss_start']:.2f} -> {info['mlm_loss_end']:.2f}")
