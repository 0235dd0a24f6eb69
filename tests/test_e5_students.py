"""preset:e5 as the paper's teacher: 12 -> 6 layer students (teacher layers 1, 3, ..., 11), hidden
384 or 192, both head modes, every init x KD on/off, on the MASSIVE sample shipped with kdtune.

Ray-free (`kdtune.training.trial`) and one training step each: the 250,037 x 384 embedding table makes a
step cost seconds on CPU. Skipped without the e5 packages (see tests/test_e5.py).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from kdtune.config import make_trial
from kdtune.errors import UsageError

PAPER_MAP = [1, 3, 5, 7, 9, 11]  # student layer j <- teacher layer 2j + 1 (0-based), 12 -> 6
TRIAL = {
    "dataset": "massive", "data_dir": "kdtune:sample", "languages": ["en-US"], "base_model": "preset:e5",
    "layers": 6, "layer_map": "paper", "fraction": 0.1, "max_steps": 1, "batch_size": 8, "lr": 1e-4,
    "eval_steps": 1, "log_steps": 1, "max_length": 12, "teacher_max_steps": 1, "teacher_batch_size": 8,
    "teacher_eval_steps": 1,
}  # fmt: skip
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, kdtune_cache):
    from kdtune.models import e5
    from kdtune.training.teacher_store import ensure_teacher

    try:
        e5.source_files()
    except UsageError as exc:
        pytest.skip(str(exc))
    return ensure_teacher(make_trial(TRIAL), tmp_path_factory.mktemp("store"), log=lambda m: None)


@pytest.fixture(scope="module")
def teacher(teacher_dir):
    from kdtune.training.teacher_store import load_teacher

    return load_teacher(teacher_dir)


@pytest.mark.parametrize("hidden, head_mode, heads", [(384, "keep_heads", 12), (192, "keep_heads", 12),
                                                      (192, "keep_head_dim", 6)])
def test_students_take_the_paper_layers_and_select_evenly(teacher, hidden, head_mode, heads):
    from kdtune.models.student import build_student

    student, report = build_student("teacher", teacher, layers=6, hidden=hidden, head_mode=head_mode)
    cfg = student.config
    assert report.layer_map == PAPER_MAP and cfg.num_hidden_layers == 6 and cfg.num_attention_heads == heads
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size) == (hidden, hidden * 4, 250_037)
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    cols = np.arange(0, 384, 384 // hidden)
    # Every vocabulary row is kept (250,037, past the tokenizer's 250,002); columns every second at 192.
    assert np.array_equal(s_sd["bert.embeddings.word_embeddings.weight"].numpy(),
                          t_sd["bert.embeddings.word_embeddings.weight"].numpy()[:, cols])
    # Query of student layer 2 = teacher layer 5: rows by head mode, columns every second.
    rows = cols if head_mode == "keep_heads" else np.concatenate([h * 32 + np.arange(32) for h in range(0, 12, 2)])
    assert np.array_equal(s_sd["bert.encoder.layer.2.attention.self.query.weight"].numpy(),
                          t_sd["bert.encoder.layer.5.attention.self.query.weight"].numpy()[rows][:, cols])
    assert sorted(report.entries) == sorted(s_sd)
    unused_layers = {int(m) for k in report.unused_source_keys for m in re.findall(r"layer\.(\d+)\.", k)}
    assert unused_layers == {0, 2, 4, 6, 8, 10}


# Every init with KD off and on; the KD cells cover both widths and both head modes.
CELLS = [("teacher", False, 192, "keep_heads"), ("base", False, 192, "keep_heads"), ("scratch", False, 384, "keep_heads"),
         ("teacher", True, 384, "keep_heads"), ("base", True, 192, "keep_head_dim"), ("scratch", True, 192, "keep_heads")]


@pytest.mark.parametrize("init, kd, hidden, head_mode", CELLS)
def test_one_step_trials_run_every_init_and_kd_term(teacher_dir, init, kd, hidden, head_mode):
    import kdtune.training.trial as trial_lib
    from kdtune.training.loop import Callbacks

    built = trial_lib.build(make_trial({**TRIAL, "init": init, "kd": kd, "hidden": hidden, "head_mode": head_mode}),
                            teacher_dir)
    logs = []
    outcome = trial_lib.run(built, CPU, Callbacks(on_log=lambda step, entry: logs.append(entry)))
    assert outcome.steps == 1 and len(logs) == 1
    terms = ("att", "hid", "emb", "pred", "clf", "total") if kd else ("total",)
    assert kd or "att" not in logs[0]
    for term in terms:  # every KD term computed (and finite) through the 12 -> 6 map
        assert math.isfinite(logs[0][term]) and logs[0][term] > 0, (term, logs[0])
    if kd:
        assert outcome.teacher_cache in ("built", "reused")
        assert built.distiller.layer_map == PAPER_MAP
    assert set(outcome.test) >= {"macro_f1", "micro_f1"} and 0 <= outcome.test["micro_f1"] <= 1
    entries = built.copy_report.entries
    word = entries["bert.embeddings.word_embeddings.weight"]
    assert word.how == ("fresh" if init == "scratch" else "copied" if hidden == 384 else "selected")
    assert word.shape == (250_037, hidden)
