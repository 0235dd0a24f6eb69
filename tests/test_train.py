"""The training loop on tiny models: learning, best-checkpoint choice, copy-only, exact resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

import kdtune.training.loop as train_module
from kdtune.metrics import DEFAULT_METRIC, majority_scores
from kdtune.training.loop import Callbacks, NonFiniteLoss, TrainSettings, TrainState, evaluate, train

VOCAB, LABELS = 40, 3


def tiny_model(seed: int = 0, dropout: float = 0.0) -> XLMRobertaForSequenceClassification:
    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40, num_labels=LABELS,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    return XLMRobertaForSequenceClassification(cfg)


def batches(n_batches: int, seed: int, batch: int = 16, length: int = 8) -> list[dict]:
    """A learnable task: the label is which of three marker tokens the sentence contains."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(10, VOCAB, (batch, length), generator=g)
        labels = torch.randint(0, LABELS, (batch,), generator=g)
        ids[:, 3] = 5 + labels  # the marker
        ids[:, 0] = 0
        mask = torch.ones_like(ids)
        mask[: batch // 2, -2:] = 0  # some padding
        ids[mask == 0] = 1
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def loader_by_epoch(n_batches: int = 6):
    return lambda epoch: batches(n_batches, seed=100 + epoch)


def independent_f1(model, loader, average: str = DEFAULT_METRIC.split("_")[0]) -> float:
    model.eval()
    preds, golds = [], []
    with torch.no_grad():
        for b in loader:
            preds += model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1).tolist()
            golds += b["labels"].tolist()
    return f1_score(golds, preds, average=average)


def test_loss_decreases_and_model_learns():
    model = tiny_model()
    val = batches(4, seed=7)
    logs = []
    settings = TrainSettings(epochs=15, lr=3e-3, eval_steps=30, log_steps=6)
    same_batches = batches(6, seed=7)  # the validation batches themselves: a learnable set
    result = train(model, lambda epoch: same_batches, val, settings, torch.device("cpu"),
                   callbacks=Callbacks(on_log=lambda s, l: logs.append(l["total"])))
    assert result.steps == 90
    assert logs[-1] < 0.5 * logs[0]
    assert result.best_score > 0.9
    assert independent_f1(model, val) == pytest.approx(result.best_score)


def test_best_checkpoint_is_the_max_validation_f1_and_is_loaded():
    model = tiny_model(seed=1)
    val = batches(3, seed=8)
    settings = TrainSettings(epochs=4, lr=5e-3, eval_steps=2, log_steps=2)
    result = train(model, loader_by_epoch(4), val, settings, torch.device("cpu"))
    f1s = [h[settings.metric] for h in result.history]
    assert len(f1s) == 8
    assert result.best_score == max(f1s)
    assert result.best_step == result.history[int(np.argmax(f1s))]["step"]  # first max wins
    # the model left in place is the best checkpoint, not the last one
    assert independent_f1(model, val) == pytest.approx(max(f1s))


def test_epochs_zero_only_evaluates_the_model_as_copied():
    model = tiny_model(seed=2)
    before = copy.deepcopy(model.state_dict())
    val = batches(3, seed=9)
    result = train(model, loader_by_epoch(), val, TrainSettings(epochs=0), torch.device("cpu"))
    assert result.steps == 0
    assert result.best_score == pytest.approx(independent_f1(model, val))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_from_a_mid_training_state_gives_identical_weights():
    settings = TrainSettings(epochs=3, lr=2e-3, eval_steps=4, log_steps=2, warmup_ratio=0.2)
    val = batches(2, seed=10)
    full = tiny_model(seed=3)
    train(full, loader_by_epoch(5), val, settings, torch.device("cpu"))

    class Stop(Exception):
        pass

    saved = {}

    def stop_at_8(step, metrics, state):
        if step == 8:  # mid-epoch 1 (5 steps per epoch)
            saved["state"] = copy.deepcopy(state)
            saved["weights"] = copy.deepcopy(interrupted.state_dict())
            raise Stop

    interrupted = tiny_model(seed=3)
    with pytest.raises(Stop):
        train(interrupted, loader_by_epoch(5), val, settings, torch.device("cpu"), callbacks=Callbacks(on_eval=stop_at_8))
    resumed = tiny_model(seed=99)  # different init: everything must come from the saved state
    resumed.load_state_dict(saved["weights"])
    result = train(resumed, loader_by_epoch(5), val, settings, torch.device("cpu"), state=saved["state"])
    assert result.steps == 15
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=1e-6)


@pytest.mark.parametrize("stop_step", [8, 10], ids=["mid-epoch", "epoch-boundary"])
def test_resume_with_dropout_and_data_loaders_is_bit_exact(stop_step):
    """Dropout draws from torch's global RNG, and so does each DataLoader iterator (its base seed):
    a resumed run must continue both where the interrupted one was, at an epoch boundary too."""
    from torch.utils.data import DataLoader

    settings = TrainSettings(epochs=3, lr=2e-3, eval_steps=2, log_steps=2, warmup_ratio=0.2)
    loaders = lambda epoch: DataLoader(batches(5, seed=100 + epoch), batch_size=None)  # noqa: E731
    val = DataLoader(batches(2, seed=10), batch_size=None)
    full_logs, resumed_logs = {}, {}
    full = tiny_model(seed=3, dropout=0.1)
    train(full, loaders, val, settings, torch.device("cpu"),
          callbacks=Callbacks(on_log=lambda step, logs: full_logs.update({step: logs["total"]})))

    class Stop(Exception):
        pass

    saved = {}

    def stop(step, metrics, state):
        if step == stop_step:  # 5 steps per epoch: 8 is mid-epoch 1, 10 ends it
            saved["state"] = copy.deepcopy(state)
            saved["weights"] = copy.deepcopy(interrupted.state_dict())
            raise Stop

    interrupted = tiny_model(seed=3, dropout=0.1)
    with pytest.raises(Stop):
        train(interrupted, loaders, val, settings, torch.device("cpu"), callbacks=Callbacks(on_eval=stop))
    resumed = tiny_model(seed=99, dropout=0.1)  # another init and RNG state: all must come from the state
    resumed.load_state_dict(saved["weights"])
    train(resumed, loaders, val, settings, torch.device("cpu"), state=saved["state"],
          callbacks=Callbacks(on_log=lambda step, logs: resumed_logs.update({step: logs["total"]})))
    # The training losses after the stop (the final weights are the best checkpoint's, which may
    # predate the stop): the same numbers, bit for bit.
    assert resumed_logs == {step: loss for step, loss in full_logs.items() if step > stop_step}
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_non_finite_loss_stops_training():
    model = tiny_model()
    with torch.no_grad():
        model.classifier.out_proj.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="step 2"):
        train(model, loader_by_epoch(), batches(1, 1), TrainSettings(epochs=1, log_steps=2), torch.device("cpu"))


def test_per_language_scores_match_sklearn_on_each_group():
    model = tiny_model(seed=4)
    val = batches(2, seed=11)
    langs = ["a"] * 16 + ["b"] * 16
    out = evaluate(model, val, torch.device("cpu"), languages=langs)
    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1) for b in val])
    golds = torch.cat([b["labels"] for b in val])
    for i, lang in enumerate("ab"):
        sl = slice(16 * i, 16 * (i + 1))
        assert out["per_language"][lang]["macro_f1"] == pytest.approx(f1_score(golds[sl], preds[sl], average="macro"))
        assert out["per_language"][lang]["micro_f1"] == pytest.approx(float((golds[sl] == preds[sl]).float().mean()))
    assert out["micro_f1"] == pytest.approx(float((golds == preds).float().mean()))
    assert TrainState().best_score < 0


def test_majority_scores_are_the_constant_majority_prediction():
    golds = np.array([2, 2, 2, 0, 1, 2, 0, 1, 1, 2])  # class 2: 5 of 10
    out = majority_scores(golds)
    assert out["micro_f1"] == pytest.approx(0.5)
    # macro: class 2 has precision 0.5, recall 1 -> F1 2/3; the other two classes score 0
    assert out["macro_f1"] == pytest.approx((2 / 3) / 3)


@pytest.mark.parametrize("metric, best_step", [("macro_f1", 4), ("micro_f1", 2)])
def test_checkpoint_selection_follows_the_metric(monkeypatch, metric, best_step):
    """Scripted validation scores on which the two F1s disagree: the kept checkpoint is the one
    the chosen metric prefers, and its weights are the ones left in the model."""
    script = iter([{"macro_f1": 0.5, "micro_f1": 0.9}, {"macro_f1": 0.7, "micro_f1": 0.6}])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: next(script))
    snapshots = {}
    model = tiny_model(seed=5)
    settings = TrainSettings(epochs=1, lr=5e-3, eval_steps=2, log_steps=2, metric=metric)
    result = train(model, loader_by_epoch(4), [], settings, torch.device("cpu"),
                   callbacks=Callbacks(on_eval=lambda step, m, st: snapshots.setdefault(step, copy.deepcopy(model.state_dict()))))
    assert result.best_step == best_step
    assert result.best_score == {"macro_f1": 0.7, "micro_f1": 0.9}[metric]
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[best_step][k]), k


def grad_norms_seen_by_optimizer(max_grad_norm: float, logs: list) -> list[float]:
    """Train 3 steps of a model whose logits are scaled by 1e4 (huge gradients); return the global
    gradient norm the optimizer received at each step, computed here from the .grad tensors."""
    model = tiny_model(seed=6)
    with torch.no_grad():
        model.classifier.out_proj.weight.mul_(1e4)
    seen = []
    original = train_module.make_optimizer

    def make_optimizer(params, settings, device):
        opt = original(params, settings, device)
        opt.register_step_pre_hook(lambda o, a, k: seen.append(float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for g in o.param_groups for p in g["params"] if p.grad is not None])))))
        return opt

    train_module.make_optimizer = make_optimizer
    try:
        settings = TrainSettings(epochs=1, max_steps=3, lr=1e-3, eval_steps=10, log_steps=1, max_grad_norm=max_grad_norm)
        train(model, loader_by_epoch(4), batches(1, 1), settings, torch.device("cpu"),
              callbacks=Callbacks(on_log=lambda step, l: logs.append(l)))
    finally:
        train_module.make_optimizer = original
    return seen


def test_gradient_norm_is_clipped_like_trainer():
    logs = []
    clipped = grad_norms_seen_by_optimizer(1.0, logs)
    assert len(clipped) == 3 and all(n == pytest.approx(1.0, rel=1e-4) for n in clipped)
    # the logged grad_norm is the norm before clipping (as Trainer logs it), far above the bound
    assert all(log["grad_norm"] > 100 for log in logs)
    unclipped_logs = []
    unclipped = grad_norms_seen_by_optimizer(0.0, unclipped_logs)
    assert unclipped[0] == pytest.approx(logs[0]["grad_norm"], rel=1e-4)  # same first step, unclipped
    assert all("grad_norm" not in log for log in unclipped_logs)
