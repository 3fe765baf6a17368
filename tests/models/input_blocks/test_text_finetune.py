"""``model.encoder: {type: text, fine_tune: true}``: the sentence transformer is the first block
of the body, over token ids made once at data preparation. A tiny fake transformer (embedding +
linear, mean-pooled) stands in for MiniLM, through the loader the real one comes from."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from polytask.config import parse_config
from polytask.data import prepare_data, text_model
from polytask.errors import ConfigError
from polytask.experiment import make_trainer
from polytask.models.build import build_network
from polytask.models.input_blocks import text as text_encoder
from polytask.predict import load_run

from ...fake_text import FrozenFake, review_frame, text_config
from ...test_cli import run_cli

FINE_TUNE = {"type": "text", "fine_tune": True, "max_length": 8}


@pytest.fixture(autouse=True)
def _fake(fake_text_encoder):
    """Every test here runs with the fake text encoder (tests/conftest.py)."""


def test_tokens_are_inputs_and_nothing_is_embedded(reviews, tmp_path):
    config = parse_config(text_config(str(reviews), str(tmp_path), encoder=FINE_TUNE))
    data = prepare_data(config)
    inputs = data.validation.inputs
    assert set(inputs) == {"numeric", "categorical", "text_ids", "text_mask"}
    n = len(data.validation)
    assert inputs["text_ids"].shape == (n, 1, 8) and inputs["text_ids"].dtype == torch.long
    assert inputs["text_mask"].dtype == torch.bool
    assert data.preprocessor.numeric == ["x"] and data.preprocessor.fine_tune
    assert FrozenFake.calls == []  # no frozen embeddings in fine-tune mode


def test_gradients_reach_the_transformer_and_a_step_changes_it(reviews, tmp_path):
    config = parse_config(text_config(str(reviews), str(tmp_path), encoder=FINE_TUNE))
    data = prepare_data(config)
    model = build_network(config.model, data.preprocessor, data.tasks)
    block = model.trunk[0]
    assert isinstance(block, text_encoder.FineTunedText)
    transformer = dict(block.transformer.named_parameters())
    shared = {id(p) for p in model.shared_parameters()}
    assert transformer and all(id(p) in shared for p in transformer.values())
    batch = next(data.train["shared"].batches(16))
    outputs = model(batch.inputs)
    losses = [
        t.loss_value(outputs[t.name], batch.targets[t.name], batch.masks[t.name])
        for t in data.tasks
    ]
    sum(loss for loss in losses if loss is not None).backward()
    grad = transformer["embedding.weight"].grad
    assert grad is not None and grad.abs().sum() > 0

    trainer = make_trainer(
        config, data, data.tasks, reference=None, progress=False, label="", checkpoint_dir=None
    )
    params = dict(trainer.model.trunk[0].transformer.named_parameters())
    before = {k: v.detach().clone() for k, v in params.items()}
    trainer.fit(data.train_source(16, "proportional", 2.0), data.validation)
    after = dict(trainer.model.trunk[0].transformer.named_parameters())
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_train_and_predict_through_the_cli(monkeypatch, capsys, reviews, tmp_path):
    config = tmp_path / "reviews.yaml"
    raw = text_config(str(reviews), str(tmp_path / "runs"), encoder=FINE_TUNE)
    config.write_text(yaml.safe_dump(raw))
    assert run_cli(monkeypatch, capsys, "train", config, "--no-baselines")[0] == 0
    run_dir = tmp_path / "runs" / "reviews"
    run = load_run(run_dir)  # the transformer's fine-tuned weights come back from safetensors
    assert isinstance(run.model.trunk[0], text_encoder.FineTunedText)
    new = tmp_path / "new.csv"
    review_frame(9, seed=3).drop(columns=["liked", "score"]).to_csv(new, index=False)
    out = tmp_path / "pred.csv"
    code, _, err = run_cli(monkeypatch, capsys, "predict", run_dir, new, "-o", out)
    assert code == 0, err
    predictions = pd.read_csv(out)
    assert len(predictions) == 9 and "liked_proba" in predictions.columns
    first = run.predict(pd.read_csv(new))
    assert first["score"].tolist() == pytest.approx(predictions["score"].tolist(), abs=1e-5)


def test_missing_extra_is_exit_code_2(monkeypatch, capsys, reviews, tmp_path):
    def missing(model):
        raise ConfigError(
            f"text features need sentence-transformers; install the text extra: "
            f"{text_model.INSTALL_HINT}"
        )

    monkeypatch.setattr(text_model, "load_trainable_encoder", missing)
    config = tmp_path / "reviews.yaml"
    config.write_text(yaml.safe_dump(text_config(str(reviews), str(tmp_path), encoder=FINE_TUNE)))
    code, _, err = run_cli(monkeypatch, capsys, "train", config)
    assert code == 2 and "pip install polytask[text]" in err and "Traceback" not in err
