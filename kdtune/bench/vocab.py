"""The used-vocabulary table's effect (`kdtune.models.vocab`), paired: kdtune's path with the
embedding table of the token ids the rows use and with the full vocabulary, one right after the
other, on the same trial, rows, batches and teacher cache.

Two places use it. Every batch size of the main model (`kdtune.bench.run.measure_batch`) times
the table the trial did not choose right after the one it did (the small preset's tokenizer is
trained on the data, so its table is mostly used and the trial keeps it whole: the forced trim
shows what it would give). And `measure_vocab_model` runs the pair alone on a second model,
``random:e5-small`` by default (multilingual-e5-small's shape with its real 250k tokenizer), in
samples of `VOCAB_GROUP` steps: a step of the full table takes seconds on a CPU.

"embedding share" = 1 - step time with the used rows / step time with the full table: the share of
a full-vocabulary step that the rows the data never uses cost (their dense gradient, AdamW's
update of them, their part of the clipping norm).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

VOCAB_GROUP = 10  # steps per timed sample of the second model (a full-table step is seconds)
VOCAB_REPEATS = 3  # at most, for the second model
ROWS_PER_BATCH_GROUP = 4  # rows = largest batch x this x VOCAB_GROUP: 4 mega-batches of VOCAB_GROUP


def pair(built, first, splits, device, repeats: int, group: int, compile: bool, seed: int, log):
    """Time the other table right after `first` (the trial's own, already timed). Returns the
    result dict, the full-vocabulary Built and, when that is the new one, its student's initial
    state dict (else None): the reference path trains the full table."""
    from kdtune.training import trial as trial_lib
    from kdtune.bench.paths import kdtune_path
    from kdtune.bench.timing import ratio
    from kdtune.models import vocab
    from kdtune.training.runtime import seed_everything

    trimmed = vocab.trimmed(built.student) is not None
    other = trial_lib.build(dataclasses.replace(built.trial, used_vocab=False), built.teacher_dir, splits=splits)
    if not trimmed:
        vocab.trim(other.student, vocab.used_ids(trial_lib.student_rows(other.inputs),
                                                 vocab.special_ids(other.tokenizer, other.student)))
    if built.distiller is not None and other.distiller is not None:
        other.distiller.teacher_cache = built.distiller.teacher_cache  # the same teacher and rows
    other0 = {k: v.detach().clone() for k, v in other.student.state_dict().items()} if trimmed else None
    log(f"  the {'full' if trimmed else 'used'}-vocabulary table, just after")
    seed_everything(seed)
    second = kdtune_path(other, device, repeats, group, compile=compile)
    used, full = (first, second) if trimmed else (second, first)
    used_student = built.student if trimmed else other.student
    table = vocab.trimmed(used_student)
    out = {
        "vocab_size": table.num_embeddings, "used_rows": len(table.ids), "hidden": table.embedding_dim,
        "trial_default": "used" if trimmed else "full",
        "used_vocab": used.to_dict(), "full_vocab": full.to_dict(), "speedup": ratio(used, full),
        "embedding_share": 1 - used.step_seconds.median / full.step_seconds.median,
    }
    return out, (other if trimmed else built), other0


def measure_vocab_model(model: str, dataset: str, data_dir, workdir: Path, batch_sizes, repeats: int,
                        device, seed: int, pad_to: int, log) -> dict:
    """The pair alone on `model`, at each batch size: a setup like the main model's (random
    init, `init: teacher`, the paper's default KD student, teacher cache), fewer rows and steps."""
    from kdtune.training import teacher_cache
    from kdtune.training import trial as trial_lib
    from kdtune.bench.paths import kdtune_path
    from kdtune.bench.setup import prepare
    from kdtune.training.runtime import seed_everything

    started = time.perf_counter()
    repeats = min(repeats, VOCAB_REPEATS)
    rows = max(batch_sizes) * ROWS_PER_BATCH_GROUP * VOCAB_GROUP
    log(f"vocabulary model {model}: preparing ({rows} training rows)")
    prepared = prepare(model, dataset, data_dir, Path(workdir) / "vocab-model", batch_size=max(batch_sizes),
                       rows=rows, seed=seed, max_length=pad_to)
    out: dict = {"model": prepared.label, "tokenizer": prepared.tokenizer, "rows": len(prepared.splits["train"]),
                 "repeats": repeats, "steps_per_sample": VOCAB_GROUP, "batches": {}}
    out["setup_seconds"] = time.perf_counter() - started
    for batch_size in batch_sizes:
        trial = dataclasses.replace(prepared.trial, batch_size=batch_size)
        built = trial_lib.build(trial, prepared.teacher_dir, splits=prepared.splits)
        status = teacher_cache.attach(built, device, log)
        log(f"vocabulary model {model}, batch {batch_size}: kdtune path, the trial's table (teacher cache {status})")
        seed_everything(seed)
        first = kdtune_path(built, device, repeats, VOCAB_GROUP)
        result, _, _ = pair(built, first, prepared.splits, device, repeats, VOCAB_GROUP, False, seed, log)
        out["batches"][str(batch_size)] = {**result, "teacher_cache": status}
        del built
    out["seconds"] = time.perf_counter() - started
    return out
