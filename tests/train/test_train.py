"""train/loop.py and models/export.py on tiny release-layout checkpoints: loss, freezing, schedule, overfitting,
checkpoints that load through the normal loader, exact resume, atomic saves, and DDP under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import random_model, tiny_config, to_release_state_dict as independent_release_names
from train_fixtures import ANSWERS, fast_config, weights, write_data
from vary_cli.models.checkpoint import load, load_directory
from vary_cli.train.dataset import IGNORE_INDEX, TrainDataset, collate, read_samples
from vary_cli.errors import VaryError
from vary_cli.models.export import LATEST
from vary_cli.models.keys import convert_state_dict, to_release_state_dict
from vary_cli.models.vary_qwen import attention_bias
from vary_cli.train.loop import cosine_with_warmup, parameter_groups, run
from vary_cli.train.qwen import batch_loss, set_trainable

TESTS = Path(__file__).parents[1]  # tests/, where the shared fixtures live


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


def _batch(checkpoint: Path, data: Path, indices=(0, 1, 2)):
    loaded = load_directory(checkpoint, torch.device("cpu"), torch.float32)
    samples = read_samples(data)
    # A sample without an image and a second turn, so padding and the zero-image path are in the batch.
    samples.append(type(samples[0])(source=data, line=99, image=None,
                                    turns=(("human", "hi"), ("gpt", "yo"), ("human", "more"), ("gpt", "ok!"))))
    dataset = TrainDataset(samples, loaded.tokenizer, loaded.config, max_length=512)
    return loaded, collate([dataset[i] for i in (*indices, len(samples) - 1)], loaded.tokenizer.endoftext_id)


def test_loss_of_a_fixed_batch_matches_an_independent_computation(tiny_checkpoint, data):
    loaded, batch = _batch(tiny_checkpoint, data)
    model = loaded.model
    total, count = batch_loss(model, batch["input_ids"], batch["labels"], batch["clip"], batch["sam"])
    loss = total / count

    # Independently: the inference forward (eager Qwen-1 attention, causal mask, seq_length is not
    # exceeded so NTK/log-n are off), one row at a time, image features merged by model.embed.
    labels, ids = batch["labels"], batch["input_ids"]
    nll, n = 0.0, 0
    for row in range(ids.shape[0]):
        keep = int((ids[row] != loaded.tokenizer.endoftext_id).sum())
        row_ids = ids[row:row + 1, :keep]
        has_image = bool((row_ids == loaded.config.im_patch_token).any())
        features = model.encode_images(batch["clip"][row:row + 1], batch["sam"][row:row + 1]) if has_image else None
        embeds = model.embed(row_ids, features)
        positions = torch.arange(keep)[None]
        with torch.no_grad():
            logits = model(embeds, positions, attention_bias(torch.zeros(1, dtype=torch.long), 0, keep, keep,
                                                             torch.float32), [1.0])[0]  # (T, V)
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        for t in range(keep - 1):
            target = int(labels[row, t + 1])
            if target != IGNORE_INDEX:
                nll -= float(log_probs[t, target])
                n += 1
    assert int(count) == n == int((labels[:, 1:] != IGNORE_INDEX).sum())
    assert float(loss) == pytest.approx(nll / n, rel=1e-5)


def test_vision_towers_frozen_and_parameter_groups():
    model = random_model(tiny_config())
    set_trainable(model, freeze_lm=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("vision_tower.", "vision_tower_high.")) for n in trainable)
    assert {"mm_projector.weight", "mm_projector_vary.bias", "embed_tokens.weight", "lm_head.weight",
            "norm.weight", "layers.0.self_attn.q_proj.bias"} <= trainable
    groups = parameter_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 0.1
    assert all("bias" in n for n in no_decay)  # Qwen's RMSNorm is decayed, as in the original
    assert "layers.0.input_layernorm.weight" not in no_decay
    set_trainable(model, freeze_lm=True)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "mm_projector.weight", "mm_projector.bias", "mm_projector_vary.weight", "mm_projector_vary.bias",
        "embed_tokens.weight"}


def test_cosine_schedule_with_warmup():
    assert cosine_with_warmup(0, 3, 100) == 0.0
    assert cosine_with_warmup(1, 3, 100) == pytest.approx(1 / 3)
    assert cosine_with_warmup(3, 3, 100) == 1.0
    assert cosine_with_warmup(3 + 97 // 2, 3, 100) == pytest.approx(0.5, abs=0.02)
    assert cosine_with_warmup(100, 3, 100) == 0.0


def test_release_names_round_trip_through_the_loader_table():
    config = tiny_config()
    ours = random_model(config).state_dict()
    release = to_release_state_dict(ours)
    independent = independent_release_names(ours, config.lm.num_layers)
    independent = {k: v for k, v in independent.items() if not k.endswith("rotary_emb.inv_freq")}
    assert release.keys() == independent.keys()
    assert all(torch.equal(release[k], independent[k]) for k in release)
    back, unknown = convert_state_dict(release)
    assert not unknown and back.keys() == ours.keys()
    assert all(torch.equal(back[k], ours[k]) for k in ours)


def test_overfits_and_the_checkpoint_reads_the_trained_text(tiny_checkpoint, data, tmp_path):
    from vary_cli.engine.config import GenerationConfig
    from vary_cli.convert.pipeline import ocr_images

    out = tmp_path / "out"
    two = write_data(tmp_path / "data", answers=ANSWERS[:2])
    result = run(fast_config(tiny_checkpoint, two, out, max_steps=20, save_every=10, lr=3e-3, batch_size=2))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 21))
    assert metrics[-1]["loss"] < 0.05 * metrics[0]["loss"]
    assert {"lr", "grad_norm", "samples_per_s", "eta_s", "tokens"} <= metrics[0].keys()
    assert result.checkpoint == out / "checkpoint-20" and (out / LATEST).read_text().strip() == "checkpoint-20"
    assert not (out / "checkpoint-10").exists()  # --keep 1
    assert {p.name for p in result.checkpoint.iterdir()} >= {"config.json", "model.safetensors", "qwen.tiktoken"}
    # Through the same loader `vary ocr --model OUT/checkpoint-20` uses.
    loaded = load(result.checkpoint, device="cpu", dtype="fp32")
    pages = [two.parent / "pages" / f"{i}.png" for i in range(2)]
    texts = [r.text for r in ocr_images(loaded, pages, "ocr", GenerationConfig(max_new_tokens=16))]
    assert texts == list(ANSWERS[:2])


def test_kill_and_resume_gives_the_same_weights(tiny_checkpoint, data, tmp_path):
    settings = dict(max_steps=6, save_every=3, batch_size=1, grad_accum=2, warmup_ratio=0.2, keep=2)
    straight = run(fast_config(tiny_checkpoint, data, tmp_path / "a", **settings))

    def kill(step: int) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(fast_config(tiny_checkpoint, data, tmp_path / "b", extra={"after_step": kill}, **settings))
    assert (tmp_path / "b" / LATEST).read_text().strip() == "checkpoint-3"
    with pytest.raises(VaryError, match="already holds checkpoints"):
        run(fast_config(tiny_checkpoint, data, tmp_path / "b", **settings))
    with pytest.raises(VaryError, match=r"other settings: .*learning_rate"):
        run(fast_config(tiny_checkpoint, data, tmp_path / "b", resume=True, **{**settings, "lr": 5e-4}))
    resumed = run(fast_config(tiny_checkpoint, data, tmp_path / "b", resume=True, **settings))
    a, b = weights(straight.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_run_killed_mid_save_keeps_the_previous_latest(tiny_checkpoint, data, tmp_path):
    out = tmp_path / "out"

    def crash(tmp: Path) -> None:
        if "checkpoint-4" in tmp.name:
            raise KeyboardInterrupt  # killed after the weights were written, before the rename

    with pytest.raises(KeyboardInterrupt):
        run(fast_config(tiny_checkpoint, data, out, max_steps=6, save_every=2,
                        extra={"before_save_release": crash}))
    assert (out / LATEST).read_text().strip() == "checkpoint-2"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "latest", "metrics.jsonl"]
    # A hard kill would leave the temporary directory behind: the next run removes it and goes on.
    (out / ".checkpoint-4.tmp-dead").mkdir()
    result = run(fast_config(tiny_checkpoint, data, out, max_steps=6, save_every=2, resume=True))
    assert result.checkpoint == out / "checkpoint-6" and not (out / ".checkpoint-4.tmp-dead").exists()
    load_directory(result.checkpoint, torch.device("cpu"), torch.float32)


def test_eval_loss_is_reported(tiny_checkpoint, data, tmp_path):
    out = tmp_path / "out"
    result = run(fast_config(tiny_checkpoint, data, out, max_steps=2, eval_data=(data,), eval_every=1))
    evals = [m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in m]
    assert [m["step"] for m in evals] == [1, 2] and result.eval_loss == evals[-1]["eval_loss"] > 0


def test_two_process_ddp_matches_one_process(tiny_checkpoint, data, tmp_path):
    """torchrun, 2 CPU processes (gloo), batch 1 each == 1 process, batch 1 x 2 accumulation."""
    common = dict(max_steps=3, batch_size=1, warmup_ratio=0.0, save_every=3)
    single = run(fast_config(tiny_checkpoint, data, tmp_path / "one", grad_accum=2, **common))
    settings = json.dumps({"model": str(tiny_checkpoint), "data": str(data), "out": str(tmp_path / "two"),
                           "grad_accum": 1, **common})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{TESTS.parent}{os.pathsep}{TESTS}"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
                    str(TESTS / "train_fixtures.py"), settings], check=True, env=env, timeout=120,
                   capture_output=True)
    one, two = weights(single.checkpoint), weights(tmp_path / "two" / "checkpoint-3")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_a_micro_batch_without_targets_keeps_the_head_in_the_graph():
    from vary_cli.train.state import target_loss

    head = torch.nn.Linear(4, 7)
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    labels = torch.full((1, 5), -100)
    total, count = target_loss(hidden, labels, head)
    total.backward()
    assert count == 0 and total.item() == 0.0
    assert head.weight.grad is not None  # DDP reduces this gradient on every rank: it must exist


def test_prune_keeps_directories_that_are_not_ours(tmp_path):
    from vary_cli.models.export import prune

    for name in ("checkpoint-best", "checkpoint-10", "checkpoint-20", "checkpoint-30"):
        (tmp_path / name).mkdir()
    (tmp_path / "latest").write_text("checkpoint-30\n")
    assert [p.name for p in prune(tmp_path, 2)] == ["checkpoint-10"]
    assert (tmp_path / "checkpoint-best").is_dir()


def test_a_torn_metrics_line_does_not_block_resume(tmp_path):
    from vary_cli.train.state import trim_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    trim_metrics(path, 2)
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'


def test_an_unwritable_out_is_one_line(tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from vary_cli.cli.app import app

    data = write_data(tmp_path / "data")
    blocker = tmp_path / "afile"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["train", "--sft", str(data), "--model", str(tiny_checkpoint),
                                      "--out", str(blocker / "out"), "--device", "cpu", "--workers", "0"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "cannot create" in result.output


def test_resuming_a_finished_run_says_so_in_one_line(tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from vary_cli.cli.app import app

    data = write_data(tmp_path / "data")
    args = ["train", "--sft", str(data), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "out"),
            "--device", "cpu", "--workers", "0", "--max-steps", "1", "--batch-size", "2", "--max-length", "256",
            "--no-gradient-checkpointing"]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args + ["--resume"])
    assert again.exit_code == 0, again.output
    assert "nothing left to train" in again.output and "Traceback" not in again.output
