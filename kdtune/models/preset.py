"""Offline model presets: a Unigram tokenizer + a small XLM-RoBERTa, briefly MLM-pretrained.

So that "from-base" means something where `xlm-roberta-base` cannot be downloaded, a preset is
built from the dataset itself:

1. a SentencePiece-style Unigram tokenizer (`tokenizers`: NFKC, Metaspace) trained on the
   training text of every language (at most `tokenizer_rows_per_language` rows of each, chosen
   by seed, to bound the time), wrapped as `PreTrainedTokenizerFast` with XLM-R's special tokens
   `<s> <pad> </s> <unk> <mask>` (ids 0..4) and XLM-R's templates (`<s> A </s>`,
   `<s> A </s></s> B </s>`);
2. an `XLMRobertaConfig` with `vocab_size = len(tokenizer)` and
   `max_position_embeddings = max_length + 2` (XLM-R positions start after the pad id);
3. `mlm_steps` AdamW steps (capped at `mlm_max_epochs` passes over the text; linear warm-up 6%,
   then linear decay) of masked-LM on random batches
   of the unlabelled training text (grouped by length, see `_length_grouped_batches`), masked by
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

Threads: small matrices gain little from many threads and lose a lot when the CPU is shared, so
the build uses `KDTUNE_THREADS` threads if set, else max(1, min(4, cpu_count // 2)), and restores
torch's setting afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import tokenizers
    import torch

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from kdtune.errors import UsageError

FORMAT_VERSION = 2  # 2: MLM steps capped by mlm_max_epochs
log = logging.getLogger(__name__)
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
PREFIX = "preset:"
_BUILT: dict[tuple, Path] = {}  # in-process memo of finished presets (see build_preset)


@dataclasses.dataclass(frozen=True)
class PresetSpec:
    """Size and pretraining budget of a preset model (see the module docstring)."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_length: int
    mlm_steps: int
    batch_size: int
    lr: float
    seed: int = 0
    tokenizer_rows_per_language: int = 2000
    mlm_probability: float = 0.15
    eval_rows: int = 512
    # At most this many passes over the training text: on a small corpus (tsm, synthetic) more
    # MLM memorises the text and the preset then fine-tunes worse than random weights.
    mlm_max_epochs: float = 5.0


PRESETS: dict[str, PresetSpec] = {
    # The paper's student is 6 layers; "tiny" keeps a 12-layer teacher shape at a small width.
    "tiny": PresetSpec(
        vocab_size=16000, hidden=128, layers=12, heads=4, intermediate=512, max_length=128,
        mlm_steps=1000, batch_size=64, lr=5e-4, tokenizer_rows_per_language=1000,
    ),
    "small": PresetSpec(
        vocab_size=32000, hidden=256, layers=8, heads=4, intermediate=1024, max_length=128,
        mlm_steps=2000, batch_size=64, lr=5e-4,
    ),
    # For fast tests on the synthetic data: builds in seconds.
    "micro": PresetSpec(
        vocab_size=1000, hidden=32, layers=4, heads=2, intermediate=64, max_length=64,
        mlm_steps=300, batch_size=32, lr=1e-3, tokenizer_rows_per_language=0, eval_rows=256,
    ),
}  # fmt: skip


def get_spec(name: str | PresetSpec) -> tuple[str, PresetSpec]:
    if isinstance(name, PresetSpec):
        return "custom", name
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return name, PRESETS[name]


def _threads() -> int:
    env = os.environ.get("KDTUNE_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise UsageError(f"KDTUNE_THREADS={env!r} is not an integer") from None
    return max(1, min(4, (os.cpu_count() or 2) // 2))


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
    blob = json.dumps(
        {"spec": dataclasses.asdict(spec), "dataset": dataset, "data": fingerprint, "format": FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_preset(
    name: str | PresetSpec,
    dataset: str,
    data_dir=None,
    out: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Build (or reuse) the preset for `dataset`; return its folder (`out` if given, a copy)."""
    from filelock import FileLock

    from kdtune import data

    preset_name, spec = get_spec(name)
    data.check_dataset(dataset)
    memo_key = (preset_name, spec, dataset, str(data_dir), os.environ.get("KDTUNE_DATA_DIR"), str(_cache_root(cache_dir)))
    if out is None and memo_key in _BUILT and (_BUILT[memo_key] / "preset.json").is_file():
        return _BUILT[memo_key]  # same process, same inputs: skip re-reading and hashing the data
    splits = data.load(dataset, data_dir)
    fingerprint = text_fingerprint(splits["train"])
    key = preset_key(spec, dataset, fingerprint)
    root = _cache_root(cache_dir) / "presets"
    final = root / f"{preset_name}-{dataset}-{key}"
    if not (final / "preset.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / f"{final.name}.lock")):
            if not (final / "preset.json").is_file():
                work = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=root))
                try:
                    _build(spec, splits, work / "preset", meta={
                        "preset": preset_name, "dataset": dataset, "data_fingerprint": fingerprint,
                        "key": key, "format": FORMAT_VERSION,
                    })  # fmt: skip
                    os.replace(work / "preset", final)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
    _BUILT[memo_key] = final
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


# ---------------------------------------------------------------------------------------------


def _sample_per_language(ds, rows: int, seed: int) -> list[str]:
    """Up to `rows` texts of each language (all when rows <= 0), chosen by seed, in row order."""
    import numpy as np

    from kdtune.data.schema import arrow_columns

    table = arrow_columns(ds, ["language", "text"])
    texts = table.column("text").to_pylist()
    if rows <= 0:
        return texts
    langs = np.asarray(table.column("language").to_pylist(), dtype=object)
    rng = np.random.default_rng(seed)
    chosen = []
    for lang in sorted(set(langs.tolist())):
        idx = np.flatnonzero(langs == lang)
        chosen.append(idx if len(idx) <= rows else rng.choice(idx, rows, replace=False))
    return [texts[i] for i in np.sort(np.concatenate(chosen))]


def train_tokenizer(texts: list[str], spec: PresetSpec):
    """A Unigram tokenizer wrapped as PreTrainedTokenizerFast with XLM-R special tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=spec.vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.model = _canonical_unigram(tok)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=spec.max_length,
    )


def _canonical_unigram(tok) -> "tokenizers.models.Unigram":
    """The trained Unigram model with a deterministic piece order.

    The trainer's parallel reductions make scores differ in the last bit from run to run, which
    reorders near-tied pieces and so permutes token ids. Rounding scores to 1e-6, one shared
    score for the appended rare characters, and sorting by (score descending, piece) after the
    special tokens make the same text give the same vocabulary and ids in every run.
    """
    from tokenizers import models

    state = json.loads(tok.to_str())["model"]
    vocab = [(piece, round(score, 6)) for piece, score in state["vocab"]]
    special = [entry for entry in vocab if entry[0] in SPECIAL_TOKENS]
    rest = [entry for entry in vocab if entry[0] not in SPECIAL_TOKENS]
    # The trainer appends required characters below the learned pieces with scores spaced 1e-4
    # apart in hash-map order (random per process): find that run at the end of the
    # score-sorted list and give its members one shared score.
    rest.sort(key=lambda e: -e[1])
    start = len(rest) - 1
    while start > 0 and -1e-9 <= (rest[start - 1][1] - rest[start][1]) <= 1e-4 + 1e-6:
        start -= 1
    if len(rest) - start >= 3:
        tail = [score for _, score in rest[start:]]
        shared = round(sum(sorted(tail)) / len(tail), 6)
        rest = rest[:start] + [(piece, shared) for piece, _ in rest[start:]]
    rest.sort(key=lambda e: (-e[1], e[0]))
    ordered = special + rest
    unk = [piece for piece, _ in ordered].index("<unk>")
    return models.Unigram(ordered, unk_id=unk, byte_fallback=bool(state.get("byte_fallback", False)))


def _mlm_loss(model, batch) -> "torch.Tensor":
    """Cross-entropy on masked positions only (same value as XLMRobertaForMaskedLM's loss)."""
    import torch

    hidden = model.roberta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    where = batch["labels"] != -100
    logits = model.lm_head(hidden[where])
    return torch.nn.functional.cross_entropy(logits, batch["labels"][where])


def _length_grouped_batches(texts, tokenizer, collator, spec: PresetSpec, rng, group: int = 50):
    """Endless MLM batches of random rows, grouped by length to avoid padding.

    Like transformers' LengthGroupedSampler: draw `group` batches' worth of random rows, sort
    them by token length, cut into batches and visit those batches in random order. On MASSIVE
    this halves the padded tokens (and so the step time) compared with plain random batches.
    """
    import numpy as np

    while True:
        pick = rng.integers(0, len(texts), spec.batch_size * group)
        ids = tokenizer([texts[i] for i in pick], truncation=True, max_length=spec.max_length)["input_ids"]
        order = np.argsort([len(row) for row in ids], kind="stable")
        chunks = [order[s : s + spec.batch_size] for s in range(0, len(order), spec.batch_size)]
        for c in rng.permutation(len(chunks)):
            yield collator([{"input_ids": ids[i]} for i in chunks[c]])


def _build(spec: PresetSpec, splits, target: Path, meta: dict) -> None:
    import numpy as np
    import torch
    from transformers import DataCollatorForLanguageModeling, XLMRobertaConfig, XLMRobertaForMaskedLM
    from transformers import get_linear_schedule_with_warmup

    from kdtune.data.schema import arrow_columns

    started = time.time()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(_threads())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            tokenizer = train_tokenizer(
                _sample_per_language(splits["train"], spec.tokenizer_rows_per_language, spec.seed), spec
            )
            tokenizer_s = time.time() - started
            log.info("preset: tokenizer trained (%d tokens) in %.0f s", len(tokenizer), tokenizer_s)
            config = XLMRobertaConfig(
                vocab_size=len(tokenizer),
                hidden_size=spec.hidden,
                num_hidden_layers=spec.layers,
                num_attention_heads=spec.heads,
                intermediate_size=spec.intermediate,
                max_position_embeddings=spec.max_length + 2,
                type_vocab_size=1,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            model = XLMRobertaForMaskedLM(config)
            model.set_attn_implementation("eager")  # faster than sdpa at this size on CPU
            collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=spec.mlm_probability)

            rng = np.random.default_rng(spec.seed)
            train_texts = arrow_columns(splits["train"], ["text"]).column("text").to_pylist()
            eval_texts = arrow_columns(splits["validation"], ["text"]).column("text").to_pylist()
            eval_pick = rng.choice(len(eval_texts), min(spec.eval_rows, len(eval_texts)), replace=False)

            def batches(texts: list[str]):
                enc = tokenizer(texts, truncation=True, max_length=spec.max_length)
                return collator([{"input_ids": ids} for ids in enc["input_ids"]])

            # Fixed masks: the start and end losses are measured on the very same inputs.
            eval_batches = [
                batches([eval_texts[i] for i in eval_pick[s : s + spec.batch_size]])
                for s in range(0, len(eval_pick), spec.batch_size)
            ]

            def eval_loss() -> float:
                model.eval()
                with torch.no_grad():
                    total = sum(float(_mlm_loss(model, b)) * int((b["labels"] != -100).sum()) for b in eval_batches)
                    count = sum(int((b["labels"] != -100).sum()) for b in eval_batches)
                model.train()
                return total / max(count, 1)

            steps = min(spec.mlm_steps, max(1, math.ceil(spec.mlm_max_epochs * len(train_texts) / spec.batch_size)))
            loss_start = eval_loss()
            log.info("preset: MLM loss before pretraining %.3f", loss_start)
            optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
            schedule = get_linear_schedule_with_warmup(
                optimizer, max(1, math.ceil(0.06 * steps)), steps
            )
            model.train()
            train_losses = []
            stream = _length_grouped_batches(train_texts, tokenizer, collator, spec, rng)
            for _ in range(steps):
                loss = _mlm_loss(model, next(stream))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                train_losses.append(loss.item())
                if len(train_losses) % 100 == 0 or len(train_losses) == steps:
                    log.info(
                        "preset: step %d/%d, train loss %.3f (last 100), %.0f s",
                        len(train_losses), steps, float(np.mean(train_losses[-100:])),
                        time.time() - started,
                    )  # fmt: skip
            loss_end = eval_loss()
    finally:
        torch.set_num_threads(previous_threads)

    target.mkdir(parents=True)
    from kdtune.quiet import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    window = max(1, len(train_losses) // 10)
    info = dict(meta)
    info.update(
        spec=dataclasses.asdict(spec),
        vocab_size=len(tokenizer),
        mlm_loss_start=loss_start,
        mlm_loss_end=loss_end,
        mlm_loss_eval="held-out validation text, fixed masks",
        train_loss_first=float(np.mean(train_losses[:window])) if train_losses else None,
        train_loss_last=float(np.mean(train_losses[-window:])) if train_losses else None,
        train_rows=len(train_texts),
        mlm_steps_run=steps,
        tokenizer_seconds=round(tokenizer_s, 1),
        seconds=round(time.time() - started, 1),
        threads=_threads(),
    )
    (target / "preset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
