"""The preset's tokenizer: a SentencePiece-style Unigram trained on the dataset's own text.

NFKC, Metaspace, XLM-R's special tokens `<s> <pad> </s> <unk> <mask>` (ids 0..4) and templates,
wrapped as `PreTrainedTokenizerFast`; the same text always gives the same vocabulary and ids.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import tokenizers

    from kdtune.models.preset_spec import PresetSpec

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def sample_per_language(ds, rows: int, seed: int) -> list[str]:
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
