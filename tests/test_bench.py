"""kdtune bench: the FLOP count against torch's own counter, padding efficiency against a hand
count, and the command end to end on the micro preset (no speed assertions: speed goals live in
the bench's output)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from kdtune.bench.flops import EncoderShape, forward_flops, kd_step_flops
from kdtune.bench.paths import Batches, padded_rows, summarise
from kdtune.training.losses import HiddenMatch, KDWeights
from kdtune.training.loop import Distiller, make_step


def classifier(layers: int, hidden: int = 32, heads: int = 4, intermediate: int = 48, labels: int = 5):
    torch.manual_seed(layers)
    cfg = XLMRobertaConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=intermediate, max_position_embeddings=40, num_labels=labels,
                           attn_implementation="eager")
    return XLMRobertaForSequenceClassification(cfg)


def unpadded_batches(lengths_per_batch: list[list[int]]) -> list[dict]:
    """Batches whose rows all have the batch's length: no padding, so every token is real."""
    g = torch.Generator().manual_seed(0)
    out = []
    for lengths in lengths_per_batch:
        assert len(set(lengths)) == 1
        ids = torch.randint(5, 60, (len(lengths), lengths[0]), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "labels": torch.randint(0, 5, (len(lengths),), generator=g)})
    return out


def test_forward_flops_match_torch_flop_counter():
    model = classifier(layers=3, hidden=32, intermediate=48, labels=7)
    for lengths in ([9, 9, 9], [4]):
        ids = torch.randint(5, 60, (len(lengths), lengths[0]))
        with FlopCounterMode(display=False) as counter:
            model(input_ids=ids)
        assert counter.get_total_flops() == forward_flops(EncoderShape.of(model), lengths)


def test_kd_step_flops_match_torch_flop_counter_on_the_real_kd_step():
    teacher, student = classifier(layers=4), classifier(layers=2)
    teacher.eval().requires_grad_(False)
    distiller = Distiller(teacher=teacher, layer_map=[1, 3], weights=KDWeights(), hidden_match=HiddenMatch(32, 32))
    step = make_step(student, distiller, torch.device("cpu"), "fp32")
    lengths = [[6, 6, 6], [11, 11]]
    with FlopCounterMode(display=False) as counter:
        for batch in unpadded_batches(lengths):
            step(batch)["total"].backward()
    expected = sum(kd_step_flops(EncoderShape.of(student), EncoderShape.of(teacher), b) for b in lengths)
    assert counter.get_total_flops() == expected
    # padding costs time, not counted work: the count depends on the real lengths only
    assert kd_step_flops(EncoderShape.of(student), EncoderShape.of(teacher), [6, 11]) < \
        kd_step_flops(EncoderShape.of(student), EncoderShape.of(teacher), [11, 11])


def test_linear_width_match_is_counted_as_torch_counts_it():
    teacher, student = classifier(layers=4, hidden=32), classifier(layers=2, hidden=16, intermediate=24)
    teacher.eval().requires_grad_(False)
    lengths = [[6, 6]]
    for mode in ("linear", "select"):  # the learned W is counted; selection is indexing, not a product
        distiller = Distiller(teacher=teacher, layer_map=[1, 3], weights=KDWeights(),
                              hidden_match=HiddenMatch(16, 32, mode))
        step = make_step(student, distiller, torch.device("cpu"), "fp32")
        with FlopCounterMode(display=False) as counter:
            for batch in unpadded_batches(lengths):
                step(batch)["total"].backward()
        s, t = EncoderShape.of(student), EncoderShape.of(teacher)
        expected = sum(kd_step_flops(s, t, b, linear_match=mode == "linear") for b in lengths)
        assert counter.get_total_flops() == expected, mode


def test_loop_loss_of_the_ablation_equals_the_vectorized_loss():
    from kdtune.bench.ablations import kd_losses_loop
    from kdtune.training.losses import kd_losses

    teacher, student = classifier(layers=4, hidden=32, heads=4), classifier(layers=2, hidden=16, heads=2)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 60, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    mask[2, 3:] = 0
    labels = torch.tensor([0, 2, 4])
    kw = {"output_hidden_states": True, "output_attentions": True}
    s_out, t_out = student(input_ids=ids, attention_mask=mask, **kw), teacher(input_ids=ids, attention_mask=mask, **kw)
    for weights in (KDWeights(), KDWeights(att=0.0, emb=2.0, pred=0.0)):
        match = HiddenMatch(16, 32, "select")
        want = kd_losses(s_out, t_out, labels, mask, [1, 3], weights, match)
        got = kd_losses_loop(s_out, t_out, labels, mask, [1, 3], weights, match)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": 4 + i for i in range(20)}}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                   pad_token="<pad>", unk_token="<unk>")


def test_padding_efficiency_of_both_paths_against_a_hand_count(tokenizer):
    from datasets import Dataset

    from kdtune.data import make_loader

    lengths = [3, 7, 4, 9, 2, 8]
    rows = Dataset.from_dict({"input_ids": [[4] * n for n in lengths], "attention_mask": [[1] * n for n in lengths],
                              "label": [0, 1, 0, 1, 0, 1]})
    # kdtune's loader without shuffling visits rows longest first, batches of 2 padded per batch:
    # (9, 8) -> 9, (7, 4) -> 7, (3, 2) -> 3: 33 real tokens in 2 * (9 + 7 + 3) = 38 slots.
    loader = make_loader(rows, tokenizer, 2, shuffle=False, group_by_length=True)
    kd = Batches()
    for batch in loader:
        kd.add(batch["attention_mask"])
    s = EncoderShape(1, 8, 16, 2)
    result = summarise(kd, [(0, 0.0), (3, 1.0)], s, s, False)
    assert (result.real_tokens, result.padded_tokens) == (33, 38)
    assert result.padding_efficiency == pytest.approx(33 / 38)
    assert result.examples == 6 and result.steps == 3
    # the reference pads every row to 16: 33 real tokens in 6 * 16 slots
    data = padded_rows(rows, tokenizer.pad_token_id, 16)
    ref = Batches()
    for _, mask, _ in torch.utils.data.DataLoader(data, batch_size=4):
        ref.add(mask)
    result = summarise(ref, [(0, 0.0), (2, 2.0)], s, s, False)
    assert result.padding_efficiency == pytest.approx(33 / 96)
    assert result.examples_per_s.median == pytest.approx(3.0)  # 6 examples in 2 s


def test_a_step_reading_the_teacher_cache_runs_only_the_students_flops(tokenizer, tmp_path):
    """With the teacher cache the step runs no teacher forward: torch's counter sees exactly the
    student's forward and backward, the count the bench uses for the cached path."""
    import dataclasses

    from datasets import Dataset

    import kdtune.training.teacher_cache as teacher_cache

    teacher, student = classifier(layers=4), classifier(layers=2)
    teacher.eval().requires_grad_(False)
    distiller = Distiller(teacher=teacher, layer_map=[1, 3], weights=KDWeights(), hidden_match=HiddenMatch(32, 32))
    lengths = [6, 6, 6, 11, 11]
    g = torch.Generator().manual_seed(0)
    rows = Dataset.from_dict({"input_ids": [torch.randint(5, 20, (n,), generator=g).tolist() for n in lengths],
                              "attention_mask": [[1] * n for n in lengths], "label": [0, 1, 2, 3, 4]})
    hidden, att = teacher_cache.needs(distiller)
    spec = teacher_cache.CacheSpec("t", "synthetic", "all", "all", 1.0, None, 40, hidden, att, "probs", "fp32",
                                   len(rows), teacher_cache.fingerprint(rows))
    n = torch.tensor(lengths).numpy()
    teacher_cache.write(tmp_path, teacher, rows, n, spec, tokenizer, torch.device("cpu"), "fp32")
    distiller = dataclasses.replace(distiller, teacher_cache=teacher_cache.TeacherCache(tmp_path))
    step = make_step(student, distiller, torch.device("cpu"), "fp32")
    batches = unpadded_batches([[6, 6, 6], [11, 11]])
    for batch, row in zip(batches, ([0, 1, 2], [3, 4])):
        batch["input_ids"] = torch.tensor([rows[i]["input_ids"] for i in row])
        batch["row"] = torch.tensor(row)
    with FlopCounterMode(display=False) as counter:
        for batch in batches:
            step(batch)["total"].backward()
    s, t = EncoderShape.of(student), EncoderShape.of(teacher)
    assert counter.get_total_flops() == sum(kd_step_flops(s, t, b, with_teacher=False) for b in ([6] * 3, [11] * 2))
    assert counter.get_total_flops() == sum(3 * forward_flops(s, b) for b in ([6] * 3, [11] * 2))


KEYS = {"machine", "setup", "batches", "memory", "sweep", "goals"}
BATCH_KEYS = {"kdtune", "kdtune_no_cache", "reference", "matmul", "speedup", "cache_speedup", "teacher_cache",
              "ablations", "vocab"}
VOCAB_KEYS = {"vocab_size", "used_rows", "hidden", "trial_default", "used_vocab", "full_vocab", "speedup",
              "embedding_share"}
PATH_KEYS = {"examples_per_s", "flops_per_s", "step_seconds", "mfu", "padding_efficiency", "real_tokens",
             "padded_tokens", "examples", "steps", "tokens_per_batch", "mfu_vs_square"}


@pytest.fixture(scope="module")
def bench_json(kdtune_cache):
    """One real end-to-end run of the command on the micro preset's shape, batch 8 then 4 (one thread:
    two threads on a loaded 2-core machine spin and run ten times slower)."""
    import contextlib
    import io

    from kdtune.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--preset", "micro", "--dataset", "synthetic", "--skip-sweep", "--repeats", "1",
                     "--batch-sizes", "8,4", "--ablations", "pad-to-max,loop-loss", "--threads", "1", "--json",
                     "--vocab-model", "preset:micro"])  # the e5-shaped default is the bench's, not a test's
    assert code == 0
    return json.loads(out.getvalue())


def test_bench_cli_prints_json_with_every_measurement(bench_json):
    r = bench_json
    assert KEYS <= set(r) and set(r["batches"]) == {"8", "4"}
    assert r["setup"]["model"] == "preset:micro" and r["setup"]["pad_to"] == 64  # micro: 64 positions
    assert r["setup"]["teacher"]["layers"] == 4 and r["setup"]["student"]["layers"] == 2
    for batch, b in r["batches"].items():
        assert BATCH_KEYS <= set(b)
        for path in ("kdtune", "kdtune_no_cache", "reference"):
            assert PATH_KEYS <= set(b[path])
            for key in ("examples_per_s", "flops_per_s", "mfu"):
                s = b[path][key]
                assert s["min"] <= s["median"] <= s["max"] and s["median"] > 0 and len(s["samples"]) == 1
        bs = int(batch)
        # kdtune pads per batch, the reference to 64: it wastes more
        assert b["reference"]["padded_tokens"] == b["reference"]["steps"] * bs * 64
        assert b["kdtune"]["padding_efficiency"] > b["reference"]["padding_efficiency"]
        assert b["kdtune"]["steps"] == 50 and b["kdtune"]["examples"] == 50 * bs
        # the same seeded batches with and without the cache; without the teacher's forward the
        # path runs fewer FLOPs per token
        assert b["kdtune"]["real_tokens"] == b["kdtune_no_cache"]["real_tokens"]
        assert b["kdtune"]["flops_per_s"]["median"] / b["kdtune"]["examples_per_s"]["median"] < \
            b["kdtune_no_cache"]["flops_per_s"]["median"] / b["kdtune_no_cache"]["examples_per_s"]["median"]
        assert b["speedup"]["median"] == pytest.approx(
            b["kdtune"]["examples_per_s"]["median"] / b["reference"]["examples_per_s"]["median"])
        assert b["cache_speedup"]["median"] == pytest.approx(
            b["kdtune"]["examples_per_s"]["median"] / b["kdtune_no_cache"]["examples_per_s"]["median"])
        assert b["kdtune"]["mfu"]["median"] == pytest.approx(
            b["kdtune"]["flops_per_s"]["median"] / b["matmul"]["kdtune_shapes"]["flops_per_s"]["median"])
        # the fast path re-timed without one item: padding every batch to 64 wastes what the reference does
        assert set(b["ablations"]) == {"pad-to-max", "loop-loss"}
        pad = b["ablations"]["pad-to-max"]
        assert pad["padding_efficiency"] == pytest.approx(pad["real_tokens"] / (pad["steps"] * bs * 64))
        for a in b["ablations"].values():  # each variant is compared with the full path timed just before it
            assert a["relative_throughput"] == pytest.approx(
                a["examples_per_s"]["median"] / a["full_path_examples_per_s"]["median"])
    # one cache for both batch sizes: the same rows and teacher
    first, second = r["batches"]["8"]["teacher_cache"], r["batches"]["4"]["teacher_cache"]
    assert (first["status"], second["status"]) == ("built", "reused") and first["bytes"] == second["bytes"] > 0
    assert r["memory"]["kind"] in ("peak_rss_delta", "maxrss_growth") and r["memory"]["bytes"] >= 0
    # the used-vocabulary pair, on the main model and on the vocabulary model: same batches, other table
    for v in [b["vocab"] for b in r["batches"].values()] + list(r["vocab_model"]["batches"].values()):
        assert VOCAB_KEYS <= set(v) and v["used_rows"] < v["vocab_size"]
        assert v["used_vocab"]["real_tokens"] == v["full_vocab"]["real_tokens"]
        assert v["speedup"]["median"] == pytest.approx(
            v["used_vocab"]["examples_per_s"]["median"] / v["full_vocab"]["examples_per_s"]["median"])
    assert r["vocab_model"]["model"] == "preset:micro" and set(r["vocab_model"]["batches"]) == {"8", "4"}
    g = r["goals"]
    assert set(g) == {"speedup@32", "mfu_vs_square@32", "mfu_vs_square@8", "teacher_cache@8", "teacher_cache@32",
                      "sweep_overhead", "used_vocab@8"}
    assert g["used_vocab@8"]["measured"] == r["vocab_model"]["batches"]["8"]["speedup"]["median"]
    assert r["sweep"] is None and g["sweep_overhead"]["met"] is None and g["speedup@32"]["met"] is None
    assert g["teacher_cache@8"]["measured"] == r["batches"]["8"]["cache_speedup"]["median"]
    assert g["teacher_cache@8"]["met"] == (g["teacher_cache@8"]["measured"] >= 1.4)
    assert g["mfu_vs_square@8"]["measured"] == r["batches"]["8"]["kdtune"]["mfu_vs_square"]


def test_bench_cli_prints_the_table(bench_json, monkeypatch, capsys):
    import kdtune.bench

    from kdtune.cli import main

    monkeypatch.setattr(kdtune.bench, "run_bench", lambda opts, log: bench_json)  # the run above, reprinted
    assert main(["bench", "--preset", "micro", "--dataset", "synthetic", "--skip-sweep"]) == 0
    table = capsys.readouterr().out
    for label in ("batch 8:", "batch 4:", "KD throughput (examples/s)", "MFU (real tokens)", "padding efficiency",
                  "KD speedup", "teacher cache (built", "teacher cache (reused", "peak memory of one trial",
                  "sweep overhead: skipped", "goal mfu_vs_square@8 >= 25.0%", "goal teacher_cache@8 >= 1.40x",
                  "goal speedup@32 >= 4.00x: - (not measured)", "embedding table: used rows",
                  "vocabulary model preset:micro", "goal used_vocab@8 >= 3.00x"):
        assert label in table, label
    assert f"{bench_json['batches']['8']['kdtune']['padding_efficiency'] * 100:.1f}%" in table


def test_bad_batch_sizes_are_a_usage_error(capsys):
    from kdtune.cli import main

    assert main(["bench", "--batch-sizes", "8,x", "--skip-sweep"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err


def test_bad_model_name_is_a_usage_error(capsys):
    from kdtune.cli import main

    assert main(["bench", "--model", "random:huge", "--skip-sweep"]) == 2
    assert "random:huge" in capsys.readouterr().err
