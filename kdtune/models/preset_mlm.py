"""The preset's model: an XLM-RoBERTa config sized by the spec, briefly masked-LM pretrained.

`pretrain` is one preset build from the tokenizer to `preset.json` (see `kdtune.models.preset`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import torch

    from kdtune.models.preset_spec import PresetSpec

from kdtune.errors import UsageError
from kdtune.models.preset_tokenizer import sample_per_language, train_tokenizer

log = logging.getLogger(__name__)  # `kdtune preset` shows it on stderr


def _threads() -> int:
    env = os.environ.get("KDTUNE_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise UsageError(f"KDTUNE_THREADS={env!r} is not an integer") from None
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def mlm_loss(model, batch) -> "torch.Tensor":
    """Cross-entropy on masked positions only (same value as XLMRobertaForMaskedLM's loss)."""
    import torch

    hidden = model.roberta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    where = batch["labels"] != -100
    logits = model.lm_head(hidden[where])
    return torch.nn.functional.cross_entropy(logits, batch["labels"][where])


def length_grouped_batches(texts, tokenizer, collator, spec: PresetSpec, rng, group: int = 50):
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


def pretrain(spec: PresetSpec, splits, target: Path, meta: dict) -> None:
    """Tokenizer, config and masked-LM pretraining; write the model, tokenizer and preset.json to `target`."""
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
                sample_per_language(splits["train"], spec.tokenizer_rows_per_language, spec.seed), spec
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
                    total = sum(float(mlm_loss(model, b)) * int((b["labels"] != -100).sum()) for b in eval_batches)
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
            stream = length_grouped_batches(train_texts, tokenizer, collator, spec, rng)
            for _ in range(steps):
                loss = mlm_loss(model, next(stream))
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
