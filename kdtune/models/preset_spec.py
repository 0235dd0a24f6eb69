"""The size and pretraining budget of each built preset (`PresetSpec`, `PRESETS`): a leaf module,
read by `kdtune.models.preset` (building and caching), `preset_tokenizer` and `preset_mlm`."""

from __future__ import annotations

import dataclasses

PREFIX = "preset:"


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
