"""Offline model presets: a Unigram tokenizer + a small XLM-RoBERTa, briefly MLM-pretrained.

So that "from-base" means something where `xlm-roberta-base` cannot be downloaded, a preset is
built from the dataset itself:

1. a SentencePiece-style Unigram tokenizer (`kdtune.models.preset_tokenizer`) (`tokenizers`: NFKC, Metaspace) trained on the
   training text of every language (at most `tokenizer_rows_per_language` rows of each, chosen
   by seed, to bound the time), wrapped as `PreTrainedTokenizerFast` with XLM-R's special tokens
   `<s> <pad> </s> <unk> <mask>` (ids 0..4) and XLM-R's templates (`<s> A </s>`,
   `<s> A </s></s> B </s>`);
2. an `XLMRobertaConfig` with `vocab_size = len(tokenizer)` and
   `max_position_embeddings = max_length + 2` (XLM-R positions start after the pad id);
3. `mlm_steps` AdamW steps (`kdtune.models.preset_mlm`) (capped at `mlm_max_epochs` passes over the text; linear warm-up 6%,
   then linear decay) of masked-LM on random batches
   of the unlabelled training text (grouped by length, see `length_grouped_batches`), masked by
   `DataCollatorForLanguageModeling` (15%, 80/10/10).
   The loss is computed on masked positions only (the LM head is the costly part at small width).

The folder is `XLMRobertaForMaskedLM.save_pretrained` + the tokenizer + `preset.json` (spec,
dataset, data fingerprint, and the MLM loss on held-out validation text with FIXED masks before
and after pretraining: `mlm_loss_start`, `mlm_loss_end`). AutoModel,
AutoModelForSequenceClassification and AutoTokenizer load it exactly as they load xlm-roberta-base.

Caching: `<cache>/presets/<name>-<dataset>-<key>`, key = sha256 of (spec, dataset, fingerprint of
the training text, format version); `<cache>` is `cache_dir`, else `KDTUNE_CACHE`, else
`~/.cache/kdtune`. Built in a temporary folder and renamed into place under a file lock, so two
processes never build the same preset twice and nobody sees half a preset.

Packaged presets (`kdtune.models.packaged`: `preset:minilm`, `preset:e5`): a real pretrained model
from installed pip packages, the same for every dataset; cached as `<cache>/presets/<name>-<key>`,
key = sha256 of (name, sha256 of each source file: minilm's zip, e5's packed weights and
tokenizer.json; e5's converter version; format version), with the same lock and rename.

Threads: small matrices gain little from many threads and lose a lot when the CPU is shared, so
the build uses `KDTUNE_THREADS` threads if set, else max(1, min(4, cpu_count // 2)), and restores
torch's setting afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from kdtune.atomic import build_once
from kdtune.config import stable_hash
from kdtune.errors import UsageError
from kdtune.models.preset_mlm import pretrain
from kdtune.models.preset_spec import PREFIX, PRESETS, PresetSpec

FORMAT_VERSION = 2  # 2: MLM steps capped by mlm_max_epochs
_BUILT: dict[tuple, Path] = {}  # in-process memo of finished presets (see build_preset)


def preset_names() -> tuple[str, ...]:
    """Every preset name: the built ones (PRESETS) and the pip-packaged pretrained ones."""
    from kdtune.models.packaged import PACKAGED

    return (*PRESETS, *PACKAGED)


def is_packaged(name) -> bool:
    """Whether `name` is a pretrained model shipped as a pip package (`kdtune.models.packaged`)."""
    from kdtune.models.packaged import PACKAGED

    return isinstance(name, str) and name in PACKAGED


def check_name(name) -> None:
    if not isinstance(name, PresetSpec) and name not in preset_names():
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())}")


def get_spec(name: str | PresetSpec) -> tuple[str, PresetSpec]:
    if isinstance(name, PresetSpec):
        return "custom", name
    check_name(name)
    if name not in PRESETS:
        raise UsageError(f"preset {name!r} is a packaged pretrained model and has no build spec")
    return name, PRESETS[name]


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from kdtune.data.sources import cache_root

    return cache_root()


def text_fingerprint(ds) -> str:
    """sha256 over the language and text columns, in row order."""
    from kdtune.data.schema import arrow_columns

    h = hashlib.sha256()
    table = arrow_columns(ds, ["language", "text"])
    for name in ("language", "text"):
        for chunk in table.column(name).chunks:
            h.update("\x00".join(chunk.to_pylist()).encode("utf-8"))
            h.update(b"\x01")
    return h.hexdigest()


def preset_key(spec: PresetSpec, dataset: str, fingerprint: str) -> str:
    return stable_hash(
        {"spec": dataclasses.asdict(spec), "dataset": dataset, "data": fingerprint, "format": FORMAT_VERSION},
        spaced=True,
    )


def build_preset(
    name: str | PresetSpec,
    dataset: str,
    data_dir=None,
    out: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Build (or reuse) the preset for `dataset`; return its folder (`out` if given, a copy)."""
    from kdtune import data

    if is_packaged(name):  # pretrained weights: the same for every dataset
        data.check_dataset(dataset)
        return _copy_out(_packaged_preset(name, cache_dir), out)
    preset_name, spec = get_spec(name)
    data.check_dataset(dataset)
    memo_key = (preset_name, spec, dataset, str(data_dir), os.environ.get("KDTUNE_DATA_DIR"), str(_cache_root(cache_dir)))
    if out is None and memo_key in _BUILT and (_BUILT[memo_key] / "preset.json").is_file():
        return _BUILT[memo_key]  # same process, same inputs: skip re-reading and hashing the data
    splits = data.load(dataset, data_dir)
    fingerprint = text_fingerprint(splits["train"])
    key = preset_key(spec, dataset, fingerprint)
    final = _cache_root(cache_dir) / "presets" / f"{preset_name}-{dataset}-{key}"
    _build_once(final, lambda target: pretrain(spec, splits, target, meta={
        "preset": preset_name, "dataset": dataset, "data_fingerprint": fingerprint,
        "key": key, "format": FORMAT_VERSION,
    }))  # fmt: skip
    _BUILT[memo_key] = final
    return _copy_out(final, out)


def _build_once(final: Path, build: Callable[[Path], None]) -> None:
    """Run `build(target)` unless `final` is finished; under a file lock, renamed into place."""
    build_once(final, build, done=lambda folder: (folder / "preset.json").is_file())


def _packaged_preset(name: str, cache_dir: Path | None) -> Path:
    """The cached folder of a packaged pretrained preset; key = sha256 of its source files (+ format)."""
    import kdtune.models.packaged as packaged

    memo_key = (name, str(_cache_root(cache_dir)))
    if memo_key in _BUILT and (_BUILT[memo_key] / "preset.json").is_file():
        return _BUILT[memo_key]  # same process: skip re-hashing the package files (83-89 MB)
    shas = {label: packaged.sha256(path) for label, path in packaged.files(name).items()}
    # minilm's blob is {"preset", "zip", "format"}, as before converted presets existed: its key is unchanged.
    key = stable_hash({"preset": name, **shas, **packaged.key_extra(name), "format": FORMAT_VERSION}, spaced=True)
    final = _cache_root(cache_dir) / "presets" / f"{name}-{key}"
    meta = {"preset": name, **{f"{label}_sha256": sha for label, sha in shas.items()}, "key": key, "format": FORMAT_VERSION}
    _build_once(final, lambda target: packaged.build(name, target, meta))
    _BUILT[memo_key] = final
    return final


def _copy_out(final: Path, out: Path | None) -> Path:
    if out is None:
        return final
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(final, out, dirs_exist_ok=True)
    return out


def resolve_base_model(base_model: str, dataset: str, data_dir=None) -> str:
    """"preset:NAME" -> the built preset folder (as str); anything else unchanged."""
    if isinstance(base_model, str) and base_model.startswith(PREFIX):
        return str(build_preset(base_model[len(PREFIX):], dataset, data_dir))
    return base_model


def load_preset_info(path: str | Path) -> dict:
    """The `preset.json` of a preset folder."""
    return json.loads((Path(path) / "preset.json").read_text(encoding="utf-8"))
