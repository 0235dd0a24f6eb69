"""The method as the paper has it (docs/fidelity.md): attention maps before dropout, the learned W,
the student's dropout settings, and the hashes that identify a result."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from kdtune.config import TRIAL_FIELDS, TeacherSpec, TrialConfig, make_trial
from kdtune.training.losses import HiddenMatch, KDWeights, kd_losses
from kdtune.models.attention import attention_by_layer, use_kd_attention
from kdtune.models.student import build_student

LAYERS = 3


def tiny_teacher(attention_dropout: float = 0.1) -> XLMRobertaForSequenceClassification:
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=32,
        max_position_embeddings=24, num_labels=3, hidden_dropout_prob=0.1, attention_probs_dropout_prob=attention_dropout,
    )
    return XLMRobertaForSequenceClassification(cfg).eval()


def padded_batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 60, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    ids[mask == 0] = 1
    return ids, mask


def exact_copy(teacher, layer_map=(0,), attention_dropout=None):
    """Copied from the teacher at the same width, no hidden dropout; attention dropout left at the
    teacher's 0.1 unless given. Its layer j is teacher layer layer_map[j]."""
    student, _ = build_student("teacher", teacher, layers=len(layer_map), layer_map=list(layer_map),
                               hidden_dropout=0.0, attention_dropout=attention_dropout)
    assert student.config.hidden_dropout_prob == 0.0
    return student


def att_loss(student, teacher, ids, mask, layer_map=(0,)) -> float:
    flags = {"output_attentions": True, "output_hidden_states": True}
    torch.manual_seed(2)
    with torch.inference_mode():
        t_out = teacher(input_ids=ids, attention_mask=mask, **flags)
    t_out.attentions = attention_by_layer(teacher, t_out.attentions)
    s_out = student(input_ids=ids, attention_mask=mask, **flags)
    w = KDWeights(hid=0, emb=0, pred=0, clf=0)
    return float(kd_losses(s_out, t_out, None, mask, list(layer_map), w, HiddenMatch(16, 16))["att"])


# Attention dropout changes a layer's *output*, so in train mode the maps of the layers after the
# first legitimately differ from the teacher's (that is the student's regulariser at work, not
# noise in the target). The layer whose input dropout cannot reach is the first: a student copy of
# it, in train mode with attention dropout 0.1, must match the teacher's map exactly.
@pytest.mark.parametrize("target", ["probs", "scores"])
def test_an_exact_copy_has_zero_attention_loss_in_train_mode(target):
    teacher = tiny_teacher()
    student = exact_copy(teacher).train()
    assert student.config.attention_probs_dropout_prob == 0.1
    ids, mask = padded_batch()
    use_kd_attention(teacher, [0], target)
    use_kd_attention(student, [0], target)
    assert att_loss(student, teacher, ids, mask) < 1e-10


def test_post_dropout_maps_would_fail_the_same_check():
    """transformers' eager attention returns maps after dropout: the same copy then has L_att > 0."""
    teacher = tiny_teacher()
    student = exact_copy(teacher).train()
    ids, mask = padded_batch()
    teacher.set_attn_implementation("eager")
    student.set_attn_implementation("eager")
    assert att_loss(student, teacher, ids, mask) > 1e-4


@pytest.mark.parametrize("target", ["probs", "scores"])
def test_a_whole_copy_without_dropout_matches_on_every_layer(target):
    teacher = tiny_teacher()
    every = tuple(range(LAYERS))
    student = exact_copy(teacher, every, attention_dropout=0.0).train()
    ids, mask = padded_batch()
    use_kd_attention(teacher, every, target)
    use_kd_attention(student, every, target)
    assert att_loss(student, teacher, ids, mask, every) < 1e-10


def test_scores_are_the_scaled_dot_products_and_padded_pairs_stay_out():
    teacher = tiny_teacher(attention_dropout=0.0)
    ids, mask = padded_batch()
    use_kd_attention(teacher, [0, 2], "scores")
    with torch.inference_mode():
        out = teacher(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    maps = attention_by_layer(teacher, out.attentions)
    assert sorted(maps) == [0, 2]
    for layer in (0, 2):
        attn = teacher.roberta.encoder.layer[layer].attention.self
        h = out.hidden_states[layer]  # the layer's input
        with torch.no_grad():
            q = (h @ attn.query.weight.T + attn.query.bias).view(3, 7, 4, 4).transpose(1, 2)
            k = (h @ attn.key.weight.T + attn.key.bias).view(3, 7, 4, 4).transpose(1, 2)
            by_hand = q @ k.transpose(-1, -2) / 2.0  # head_dim 4: scaling 1/sqrt(4)
        torch.testing.assert_close(maps[layer], by_hand, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(maps[layer]).all()  # no mask value reached them
    # L_att on scores against a student whose maps are shifted by +3 on padded pairs only: the
    # padded pairs must not count, so the loss equals the hand MSE over real pairs alone.
    student_maps = {k: v.clone() for k, v in maps.items()}
    shifted = [student_maps[0] + 0.5, student_maps[2] - 0.25]
    pair = (mask[:, :, None] * mask[:, None, :]).bool()
    for s in shifted:
        s[~pair[:, None].expand_as(s)] += 3.0
    student_out = type("Out", (), {"attentions": tuple(shifted), "logits": torch.zeros(3, 3), "hidden_states": None})
    teacher_out = type("Out", (), {"attentions": maps, "logits": torch.zeros(3, 3), "hidden_states": None})
    w = KDWeights(hid=0, emb=0, pred=0, clf=0)
    got = kd_losses(student_out, teacher_out, None, mask, [0, 2], w, HiddenMatch(16, 16))["att"]
    assert float(got) == pytest.approx((0.5**2 + 0.25**2) / 2, rel=1e-6)


def test_evaluation_needs_no_attention_maps_and_matches_eager():
    teacher = tiny_teacher()
    ids, mask = padded_batch()
    with torch.inference_mode():
        eager = teacher(input_ids=ids, attention_mask=mask).logits
        use_kd_attention(teacher, [1], "probs")
        kd = teacher(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(kd, eager, rtol=1e-5, atol=1e-6)


def test_dropout_fields_reach_the_student_config():
    teacher = tiny_teacher()
    student, _ = build_student("scratch", teacher, hidden_dropout=0.0, attention_dropout=0.3)
    assert (student.config.hidden_dropout_prob, student.config.attention_probs_dropout_prob) == (0.0, 0.3)
    student, _ = build_student("scratch", teacher)
    assert (student.config.hidden_dropout_prob, student.config.attention_probs_dropout_prob) == (0.1, 0.1)


# --- hashes ------------------------------------------------------------------------------------

GOLDEN_TRIAL = {"dataset": "massive", "base_model": "xlm-roberta-base", "init": "base", "hidden": 384, "kd": True}
# Pinned on purpose. If one of these fails, what is hashed changed: a changed default or a new
# field changes which stored results count as done. Decide, update the value, and say so in the
# commit and docs/fidelity.md ("Hashes").
# 2026-12-08 (issue #25): the default metric became micro_f1 (was macro_f1: a1e1b698d833c8c7 /
# 1ddbd205a3ff400d, which a trial that writes `metric: macro_f1` still has).
GOLDEN_CONFIG_HASH = "9ca8b0dbae767436"
GOLDEN_TEACHER_KEY = "91420ef50f45b062"
MACRO_F1_CONFIG_HASH = "a1e1b698d833c8c7"
MACRO_F1_TEACHER_KEY = "1ddbd205a3ff400d"


def test_golden_hashes():
    trial = make_trial(GOLDEN_TRIAL)
    assert trial.metric == "micro_f1"
    assert trial.config_hash == GOLDEN_CONFIG_HASH
    assert trial.teacher_key == GOLDEN_TEACHER_KEY


def test_a_trial_that_names_the_old_default_metric_keeps_its_old_hashes():
    """Stores written before the default moved (every committed reproduction) are found again by a
    sweep file that pins `metric: macro_f1`."""
    trial = make_trial({**GOLDEN_TRIAL, "metric": "macro_f1"})
    assert (trial.config_hash, trial.teacher_key) == (MACRO_F1_CONFIG_HASH, MACRO_F1_TEACHER_KEY)


def test_an_old_run_without_the_metric_param_reads_as_macro_f1():
    """A run logged before `metric` was a param was selected by macro-F1: the readers of old runs
    (`kdtune best`, the report's mixed-settings check) take the legacy value, not today's default."""
    from kdtune.config.params import default_params, param_text, values_from_params

    logged = {k: param_text(v) for k, v in make_trial({**GOLDEN_TRIAL, "metric": "macro_f1"}).to_dict().items()}
    del logged["metric"]
    rebuilt = make_trial(values_from_params(logged))
    assert rebuilt.metric == "macro_f1" and rebuilt.config_hash == MACRO_F1_CONFIG_HASH
    assert default_params()["metric"] == "macro_f1"
    assert make_trial(values_from_params({**logged, "metric": "micro_f1"})).config_hash == GOLDEN_CONFIG_HASH


# Trial fields teacher fine-tuning does not read (the student's shape, losses and optimiser, and
# what only changes where or how fast). Every other field must change the teacher key.
STUDENT_ONLY = {
    "train_partition", "eval_partition", "fraction", "init", "layers", "hidden", "layer_map", "head_mode",
    "hidden_dropout", "attention_dropout", "kd", "w_att", "w_hid", "w_emb", "w_pred", "w_clf", "att_target",
    "hidden_match", "seed", "epochs", "max_steps", "batch_size", "lr", "eval_steps", "compile", "save_model",
    # speed only (config.UNHASHED): KD reads the same teacher outputs from disk instead of computing
    # them; fine-tuning never reads it, so it is neither in the teacher key nor in the config hash
    "teacher_cache",
}
# Where the data is, how often to log, and `used_vocab`: teacher fine-tuning reads it, but it is
# the same computation (tests/test_vocab.py), so it is in neither the config hash nor the key.
NOT_HASHED = {"data_dir", "log_steps", "used_vocab"}


def _changed(field: str):
    default = getattr(make_trial({}), field)
    other = {
        bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2 + 0.01, tuple: lambda v: (*v, 9),
    }
    if field in ("dataset",):
        return "tsm"
    if field in ("metric",):
        return "macro_f1"
    if field in ("precision",):
        return "fp32"
    if field in ("base_model", "data_dir"):
        return "/elsewhere"
    if field in ("languages", "teacher_partition"):
        return "en-US,de-DE"
    if field in ("train_partition", "eval_partition"):
        return "seen"
    if field == "init":
        return "scratch"
    if field == "head_mode":
        return "keep_head_dim"
    if field == "layer_map":
        return "uniform"
    if field == "hidden_match":
        return "select"
    if field == "att_target":
        return "scores"
    if default is None:
        return {"layers": 3, "hidden": 384, "max_steps": 5, "teacher_max_steps": 5,
                "hidden_dropout": 0.0, "attention_dropout": 0.0, "teacher_weight_decay": 0.01,
                "teacher_warmup_ratio": 0.1, "teacher_max_grad_norm": 0.5}[field]
    return other[type(default)](default)


@pytest.mark.parametrize("field", sorted(TRIAL_FIELDS))
def test_every_field_teacher_fine_tuning_reads_changes_the_teacher_key(field):
    """A field added to TrialConfig must be classified here: student-only, or in the teacher key."""
    assert field in STUDENT_ONLY | NOT_HASHED or field in {"teacher_" + f for f in ("epochs", "max_steps", "lr",
                                                          "batch_size", "eval_steps", "seeds", "partition",
                                                          "weight_decay", "warmup_ratio", "max_grad_norm")} | {
        "dataset", "languages", "max_length", "group_by_length", "base_model", "weight_decay", "warmup_ratio",
        "max_grad_norm", "metric", "precision"}, f"classify the new field {field!r}"
    # train_partition is also the teacher's languages while teacher_partition is unset: pin that
    pinned = {"teacher_partition": "all"} if field == "train_partition" else {}
    base = make_trial(pinned)
    changed = make_trial({**pinned, field: _changed(field)})
    assert getattr(changed, field) != getattr(base, field)
    if field in STUDENT_ONLY or field in NOT_HASHED:
        assert changed.teacher_key == base.teacher_key, field
    else:
        assert changed.teacher_key != base.teacher_key, field


def test_train_partition_is_the_teachers_unless_teacher_partition_is_set():
    assert make_trial({"train_partition": "seen"}).teacher_key == make_trial({"teacher_partition": "seen"}).teacher_key
    assert make_trial({"train_partition": "seen"}).teacher_key != make_trial({}).teacher_key


def test_teacher_spec_is_what_the_key_hashes():
    """Every TeacherSpec field but the unhashed two is in the key (the spec is all fine_tune reads)."""
    spec = make_trial({"languages": "en-US"}).teacher_spec()
    hashed = spec.hashed_fields()
    assert set(hashed) == {f.name for f in dataclasses.fields(TeacherSpec)} - NOT_HASHED
    for f in dataclasses.fields(TeacherSpec):
        if f.name in NOT_HASHED:
            continue
        value = getattr(spec, f.name)
        new = (not value) if isinstance(value, bool) else "x" if isinstance(value, str) else (
            (*value, 9) if isinstance(value, tuple) else (value or 0) + 1)
        assert dataclasses.replace(spec, **{f.name: new}).key != spec.key, f.name


@pytest.mark.parametrize("field, value", [("max_grad_norm", 0.0), ("hidden_match", "select"), ("att_target", "scores"),
                                          ("metric", "macro_f1"), ("hidden_dropout", 0.0), ("attention_dropout", 0.0)])
def test_each_new_setting_changes_the_config_hash(field, value):
    assert make_trial({field: value}).config_hash != make_trial({}).config_hash


def test_teacher_overrides_leave_the_student_and_old_keys_alone():
    """teacher_warmup_ratio & co. set the teacher's value only; at their default (None) the teacher
    follows the student's value, so every earlier hash and teacher key holds."""
    base = make_trial({"warmup_ratio": 0.1})
    assert make_trial({"warmup_ratio": 0.1, "teacher_warmup_ratio": None}).config_hash == base.config_hash
    # a student tuned on warm-up keeps the teacher of a fixed teacher_warmup_ratio
    pinned = [make_trial({"warmup_ratio": w, "teacher_warmup_ratio": 0.1}) for w in (0.0, 0.05, 0.2)]
    assert {t.teacher_key for t in pinned} == {base.teacher_key}
    assert len({t.config_hash for t in pinned}) == 3
    for key, value in (("teacher_weight_decay", 0.01), ("teacher_max_grad_norm", 0.5)):
        student_key = key[len("teacher_"):]
        assert make_trial({key: value}).teacher_key == make_trial({student_key: value}).teacher_key
        assert make_trial({key: value}).teacher_spec().__getattribute__(student_key) == value


def test_compile_and_where_the_data_lives_do_not_change_the_hash():
    base = make_trial({})
    assert make_trial({"compile": True, "data_dir": "/x", "save_model": True}).config_hash == base.config_hash
    assert make_trial({"teacher_cache": False}).config_hash == base.config_hash  # speed only
    assert isinstance(base, TrialConfig)


# --- the learned W, trained and resumed ----------------------------------------------------------

HALF_WIDTH_KD = {
    "dataset": "synthetic", "base_model": "preset:micro", "kd": True, "hidden": 16, "max_steps": 12,
    "batch_size": 32, "lr": 1e-3, "eval_steps": 6, "log_steps": 3, "max_length": 32, "teacher_max_steps": 10,
    "teacher_batch_size": 64, "teacher_eval_steps": 10,
}  # dropout left on: a resumed run must also continue the dropout masks


def test_half_width_kd_trains_w_by_default_and_resumes_bit_exactly(tmp_path, kdtune_cache):
    import kdtune.training.trial as trial_lib
    from kdtune.training.teacher_store import ensure_teacher
    from kdtune.training.loop import Callbacks

    trial = make_trial(HALF_WIDTH_KD)  # hidden_match left at its default
    teacher_dir = ensure_teacher(trial, tmp_path, log=lambda m: None)
    cpu = torch.device("cpu")

    full = trial_lib.build(trial, teacher_dir)
    assert full.distiller.hidden_match.used == "linear"
    w0 = full.distiller.hidden_match.proj.weight.detach().clone()
    trial_lib.run(full, cpu)
    w_end = full.distiller.hidden_match.proj.weight.detach()
    assert not torch.equal(w0, w_end)  # W is trained

    class Stop(Exception):
        pass

    def stop_at_6(step, metrics, state):
        if step == 6:
            trial_lib.save_checkpoint(tmp_path / "ckpt", interrupted, state, {})
            raise Stop

    interrupted = trial_lib.build(trial, teacher_dir)
    with pytest.raises(Stop):
        trial_lib.run(interrupted, cpu, Callbacks(on_eval=stop_at_6))
    resumed = trial_lib.build(trial, teacher_dir)
    state, _ = trial_lib.load_checkpoint(tmp_path / "ckpt", resumed)
    assert state.step == 6 and torch.equal(resumed.distiller.hidden_match.proj.weight,
                                           interrupted.distiller.hidden_match.proj.weight)
    # Both runs end on the best checkpoint of the same history (the student) and on W as trained
    # to the last step: every tensor must match bit for bit.
    trial_lib.run(resumed, cpu, state=copy.deepcopy(state))
    assert torch.equal(resumed.distiller.hidden_match.proj.weight, w_end)
    for k, v in full.student.state_dict().items():
        assert torch.equal(resumed.student.state_dict()[k], v), k


def test_a_model_outside_the_attention_interface_is_refused_not_silently_read_after_dropout(monkeypatch):
    """transformers before 5.0 kept BERT's and XLM-R's own attention classes: switching them to kdtune's
    attention did nothing, and L_att read post-dropout maps. kdtune refuses such a model."""
    from kdtune.errors import UsageError
    from kdtune.models.attention import use_kd_attention

    model = tiny_teacher()
    monkeypatch.setattr(type(model), "_supports_attention_backend", False)
    with pytest.raises(UsageError, match="AttentionInterface"):
        use_kd_attention(model, read_layers=[0])
