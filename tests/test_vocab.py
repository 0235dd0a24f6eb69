"""Used-vocabulary embedding tables (kdtune.models.vocab) are the same computation: a short run
with and without one gives the same loss curve and the same saved weights (float tolerance: the
clipping norm is summed in another order), at weight decay 0 and > 0, from the teacher and from
scratch; evaluation-only tokens are in the table; checkpoints resume, full-table ones too; the
saved student has the full vocabulary and predicts what the trial measured; teachers too."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from kdtune.config import make_trial
from kdtune.models import vocab

# English training rows, tested on every language: most of the micro vocabulary is unused in
# training, and the test rows hold tokens no training or validation row has.
TRIAL = {
    "dataset": "synthetic", "base_model": "preset:micro", "kd": True, "hidden": 16, "max_steps": 10,
    "batch_size": 16, "lr": 1e-3, "eval_steps": 5, "log_steps": 1, "max_length": 32, "teacher_max_steps": 10,
    "teacher_batch_size": 64, "teacher_eval_steps": 10, "train_partition": "english", "eval_partition": "all",
}
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: two on two shared cores spin in OpenMP barriers (5x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, kdtune_cache):
    from kdtune.training.teacher_store import ensure_teacher

    return ensure_teacher(make_trial(TRIAL), tmp_path_factory.mktemp("store"), log=lambda m: None)


@pytest.fixture
def always_trim(monkeypatch):
    """Trim whatever the table's share: these tests are about sameness, not where it pays."""
    monkeypatch.setattr(vocab, "PAYS_FROM", 0.0)


def build(teacher_dir, **fields):
    from kdtune.training import trial as trial_lib

    built = trial_lib.build(make_trial({**TRIAL, **fields}), teacher_dir)
    assert isinstance(built.student.get_input_embeddings(), vocab.UsedVocabEmbedding) == fields["used_vocab"]
    return built


def run(built, state=None, on_eval=None):
    """Every loss term at every step, the outcome, and the student as it leaves the trial."""
    from kdtune.training import trial as trial_lib
    from kdtune.training.loop import Callbacks

    curve = []
    cb = Callbacks(on_log=lambda step, logs: curve.append(logs), **({"on_eval": on_eval} if on_eval else {}))
    outcome = trial_lib.run(built, CPU, cb, state)
    return curve, outcome, {k: v.detach().clone() for k, v in built.student.state_dict().items()}


def assert_same_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k].shape == v.shape, k
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")


def assert_same_curve(got: list, want: list) -> None:
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in b:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k


@pytest.mark.parametrize("init", ["teacher", "scratch"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_same_loss_curve_and_saved_weights_with_and_without_it(teacher_dir, always_trim, init, weight_decay):
    fields = {"init": init, "weight_decay": weight_decay}
    full_curve, full, full_weights = run(build(teacher_dir, used_vocab=False, **fields))
    used = build(teacher_dir, used_vocab=True, **fields)
    table = used.student.get_input_embeddings()
    assert len(table.ids) < 0.7 * table.num_embeddings
    used_curve, outcome, used_weights = run(used)
    assert_same_curve(used_curve, full_curve)
    assert_same_weights(used_weights, full_weights)  # the full vocabulary, unused rows decayed
    assert outcome.best_step == full.best_step and outcome.test == full.test
    if init == "teacher" and weight_decay:  # the decay counts the steps up to the kept checkpoint only
        assert outcome.best_step < outcome.steps


def test_the_table_holds_every_evaluation_token(teacher_dir, always_trim):
    from kdtune.training.loop import evaluate

    built = build(teacher_dir, used_vocab=True)
    table = set(built.student.get_input_embeddings().ids.tolist())
    train = set(vocab.used_ids([built.inputs.train_loader(0).dataset]).tolist())
    for split in (built.inputs.validation, built.inputs.test):
        assert set(vocab.used_ids([split.loader.dataset]).tolist()) <= table
    assert set(vocab.used_ids([built.inputs.test.loader.dataset]).tolist()) - train  # there are some
    evaluate(built.student, built.inputs.test.loader, CPU)


def test_a_token_outside_the_table_is_an_error():
    full = torch.nn.Embedding(10, 4, padding_idx=1)
    table = vocab.UsedVocabEmbedding(full, torch.tensor([0, 1, 5]))
    ids = torch.tensor([[0, 5, 1]])
    torch.testing.assert_close(table(ids), full(ids))
    assert table.padding_idx == 1 and table.weight.shape == (3, 4)
    with pytest.raises(IndexError, match=r"\[7\]"):
        table(torch.tensor([[0, 7]]))


def test_saved_student_has_the_full_vocabulary_and_predicts_what_the_trial_measured(teacher_dir, always_trim,
                                                                                     tmp_path):
    from transformers import AutoModelForSequenceClassification

    from kdtune.metrics import scores
    from kdtune.training.loop import predict

    built = build(teacher_dir, used_vocab=True, weight_decay=0.1)
    _, outcome, _ = run(built)
    built.student.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert loaded.get_input_embeddings().num_embeddings == built.teacher.config.vocab_size
    preds, golds = predict(loaded, built.inputs.test.loader, CPU)
    assert scores(preds, golds, built.inputs.test.languages) == outcome.test


class Stop(Exception):
    pass


@pytest.mark.parametrize("written", ["used", "full"])
def test_resume_from_a_checkpoint_of_either_table(teacher_dir, always_trim, tmp_path, written):
    """Interrupted at step 5, resumed with the used-vocabulary table: the same end as a run never
    interrupted (bit for bit from its own checkpoint; within float tolerance from a full-table one)."""
    from kdtune.training import trial as trial_lib

    fields = {"weight_decay": 0.1}
    _, _, want = run(build(teacher_dir, used_vocab=True, **fields))

    def stop_at_5(step, metrics, state):
        if step == 5:
            trial_lib.save_checkpoint(tmp_path / "ckpt", interrupted, state, {})
            raise Stop

    interrupted = build(teacher_dir, used_vocab=written == "used", **fields)
    with pytest.raises(Stop):
        run(interrupted, on_eval=stop_at_5)
    resumed = build(teacher_dir, used_vocab=True, **fields)
    state, _ = trial_lib.load_checkpoint(tmp_path / "ckpt", resumed)
    assert state.step == 5
    _, _, got = run(resumed, state=copy.deepcopy(state))
    if written == "used":
        for k, v in want.items():
            assert torch.equal(got[k], v), k
    else:
        assert_same_weights(got, want)


def test_a_trimmed_checkpoint_resumes_with_the_trim_switched_off(teacher_dir, always_trim, tmp_path):
    from kdtune.training import trial as trial_lib

    interrupted = build(teacher_dir, used_vocab=True)

    def stop_at_5(step, metrics, state):
        trial_lib.save_checkpoint(tmp_path / "ckpt", interrupted, state, {})
        raise Stop

    with pytest.raises(Stop):
        run(interrupted, on_eval=stop_at_5)
    resumed = build(teacher_dir, used_vocab=False)
    state, _ = trial_lib.load_checkpoint(tmp_path / "ckpt", resumed)
    assert isinstance(resumed.student.get_input_embeddings(), vocab.UsedVocabEmbedding)
    _, _, got = run(resumed, state=state)
    assert got["roberta.embeddings.word_embeddings.weight"].shape[0] == resumed.teacher.config.vocab_size


def test_teacher_fine_tuning_is_the_same_with_it(tmp_path, kdtune_cache, always_trim, monkeypatch):
    from safetensors.torch import load_file

    from kdtune.training.teacher_store import fine_tune

    trimmed = []
    trim = vocab.trim_where_it_pays
    monkeypatch.setattr(vocab, "trim_where_it_pays", lambda model, ids: trimmed.append(trim(model, ids)))
    spec = make_trial({**TRIAL, "weight_decay": 0.1, "teacher_eval_steps": 5}).teacher_spec()
    for used in (False, True):
        fine_tune(dataclasses.replace(spec, used_vocab=used), tmp_path / str(used), log=lambda m: None)
    assert trimmed == [True]
    assert_same_weights(load_file(tmp_path / "True" / "model.safetensors"),
                        load_file(tmp_path / "False" / "model.safetensors"))


def test_closed_form_decay_is_what_adamw_does_to_a_row_without_gradient():
    from transformers import get_linear_schedule_with_warmup

    from kdtune.training.loop import TrainSettings, make_optimizer

    p = torch.nn.Parameter(torch.ones(4, 3))
    opt = make_optimizer([p], TrainSettings(lr=0.05, weight_decay=0.3), CPU)
    sched = get_linear_schedule_with_warmup(opt, 2, 9)
    lrs = []
    for _ in range(7):
        lrs.append(sched.get_last_lr()[0])
        p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    torch.testing.assert_close(p.detach(), torch.full((4, 3), vocab.decay_factor(lrs, 0.3)))
    assert vocab.decay_factor(lrs, 0.0) == 1.0


def test_tied_and_small_tables_are_left_alone():
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification

    cfg = XLMRobertaConfig(vocab_size=500, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=8, max_position_embeddings=20, tie_word_embeddings=True)
    mlm = XLMRobertaForMaskedLM(cfg)
    assert vocab.is_tied(mlm) and not vocab.trim_where_it_pays(mlm, torch.arange(10))
    clf = XLMRobertaForSequenceClassification(cfg)
    assert not vocab.trim_where_it_pays(clf, torch.arange(480))  # drops 20 of 500 rows: too few to pay
    assert vocab.trim_where_it_pays(clf, torch.arange(10))


def test_it_changes_neither_the_config_hash_nor_the_teacher_key():
    base = make_trial({})
    off = make_trial({"used_vocab": False})
    assert (off.config_hash, off.teacher_key) == (base.config_hash, base.teacher_key)
    assert off.teacher_spec().used_vocab is False
