"""Hub base models are resolved by the driver before any work: cached, or one line with the fix.

"No hub" is simulated without network access: HF_ENDPOINT on a loopback port nothing listens on
(connection refused). The CLI runs in a subprocess because huggingface_hub reads HF_ENDPOINT,
HF_HUB_OFFLINE and HF_HOME once, at import.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdtune.errors import UsageError
from kdtune.models.resolve import fetch_base_model, is_hub_name, wanted_files

REPO = Path(__file__).resolve().parents[1]
SHA = "0" * 40


def refused_endpoint() -> str:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def fake_cached_model(hub_cache: Path, repo: str, weights: bool = True) -> Path:
    """A 4-layer model laid out as huggingface_hub caches a download (refs/main -> snapshots/<sha>)."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    root = hub_cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / SHA
    config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=64)
    if weights:
        XLMRobertaModel(config).save_pretrained(snap)
    else:
        config.save_pretrained(snap)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(SHA)
    return snap


def run_cli(tmp_path: Path, base_model: str, env: dict, *sets: str) -> tuple[int, list[str], float]:
    work = tmp_path / "work"
    work.mkdir()
    (work / "s.yaml").write_text(f"fixed: {{dataset: synthetic, base_model: {base_model}, epochs: 1}}\n"
                                 "resources: {cpu: 1}\n")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update({"PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "hf"), "MLFLOW_TRACKING_URI": "",
                     "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", **env})
    argv = [sys.executable, "-m", "kdtune.cli", "sweep", "s.yaml"]
    for s in sets:
        argv += ["--set", s]
    started = time.time()
    proc = subprocess.run(argv, cwd=work, env=full_env, capture_output=True, text=True, timeout=300)
    assert sorted(p.name for p in work.iterdir()) == ["s.yaml"], proc.stdout  # nothing written
    return proc.returncode, proc.stderr.strip().splitlines(), time.time() - started


def test_unreachable_hub_and_no_cache_is_one_line_with_the_reason_and_the_fix(tmp_path):
    code, err, seconds = run_cli(tmp_path, "xlm-roberta-base", {"HF_ENDPOINT": refused_endpoint()})
    assert code == 2 and len(err) == 1, err
    line = err[0]
    assert line.startswith("kdtune: error: s.yaml: base_model: xlm-roberta-base: ")
    assert "cannot be reached (Connection refused)" in line
    assert "HF_HUB_OFFLINE=1" in line and "local model folder" in line
    assert seconds < 120  # no retries: the subprocess is mostly imports


def test_offline_with_an_empty_cache_is_one_line_with_the_fix(tmp_path):
    code, err, _ = run_cli(tmp_path, "xlm-roberta-base", {"HF_HUB_OFFLINE": "1"})
    assert code == 2 and len(err) == 1, err
    assert "base_model: xlm-roberta-base: not in the Hugging Face cache" in err[0]
    assert "HF_HUB_OFFLINE=1 forbids downloading" in err[0] and "hf download xlm-roberta-base" in err[0]


def test_a_cached_hub_model_needs_no_hub_and_its_shape_is_checked(tmp_path):
    fake_cached_model(tmp_path / "hf" / "hub", "kdtune-test/micro4")
    code, err, _ = run_cli(tmp_path, "kdtune-test/micro4", {"HF_ENDPOINT": refused_endpoint()}, "fixed.layers=6")
    assert code == 2 and len(err) == 1, err
    assert "layers" in err[0] and "(base_model kdtune-test/micro4: 4 layers, hidden 32, 4 heads)" in err[0]


def test_the_cache_is_read_without_network_and_an_incomplete_one_is_not_enough(tmp_path):
    # the test session runs with HF_HUB_OFFLINE=1: any attempt to reach the hub would raise
    snap = fake_cached_model(tmp_path, "kdtune-test/full")
    assert fetch_base_model("kdtune-test/full", "s.yaml", cache_dir=tmp_path) == snap
    fake_cached_model(tmp_path, "kdtune-test/config-only", weights=False)
    with pytest.raises(UsageError, match=r"s.yaml: base_model: kdtune-test/config-only: not in the Hugging Face"):
        fetch_base_model("kdtune-test/config-only", "s.yaml", cache_dir=tmp_path)


def test_presets_and_paths_are_not_hub_names(tmp_path):
    assert is_hub_name("xlm-roberta-base") and is_hub_name("FacebookAI/xlm-roberta-base")
    assert not is_hub_name("preset:tiny") and not is_hub_name("./model") and not is_hub_name(str(tmp_path))


def test_only_the_files_from_pretrained_needs_are_downloaded():
    files = {"config.json": 1, "model.safetensors": 2, "pytorch_model.bin": 2, "tf_model.h5": 2,
             "sentencepiece.bpe.model": 1, "tokenizer.json": 1, "onnx/model.onnx": 2, "flax_model.msgpack": 2}
    assert set(wanted_files(files)) == {"config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json"}
    assert "pytorch_model.bin" in wanted_files({"config.json": 1, "pytorch_model.bin": 2, "training_args.bin": 1})
    assert "training_args.bin" not in wanted_files({"config.json": 1, "pytorch_model.bin": 2, "training_args.bin": 1})
