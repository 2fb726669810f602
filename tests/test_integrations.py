"""The Lightning and transformers callbacks in real runs of those libraries (random weights, nothing downloads).

Each run logs through the framework's own path (a Lightning ``CSVLogger`` file; the Trainer's
``log_history``), every logged value is a finite number, and the last one equals a fresh
``measure_model`` of the trained model.
"""

from __future__ import annotations

import csv
import math
import warnings

import lightning  # noqa: F401  -- test extras: these tests run the real libraries
import pytest
import torch
import transformers

import emergence
from emergence.errors import ConfigError


def _finite_floats(values):
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


def _lightning_module(dead: bool = False):
    import lightning.pytorch as pl

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                                           torch.nn.ReLU(), torch.nn.Linear(16, 3))
            if dead:  # every hidden unit off: E = 0, which is still logged as a number
                with torch.no_grad():
                    self.net[0].bias.fill_(-100.0)
                    self.net[2].bias.fill_(-100.0)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1 if not dead else 0.0)

    return Classifier()


def _fit_lightning(tmp_path, module, callback, epochs=3):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    logger = CSVLogger(tmp_path, name="run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and on logging intervals
        pl.Trainer(max_epochs=epochs, logger=logger, callbacks=[callback], enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                   log_every_n_steps=1).fit(module, loader)
    with open(f"{logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


def test_lightning_callback_logs_what_a_fresh_measurement_gives(tmp_path):
    from emergence.integrations.lightning import EmergenceCallback

    module = _lightning_module()
    probe = torch.rand(32, 8, generator=torch.Generator().manual_seed(5))
    callback = EmergenceCallback(probe, thresholds=(0.05, 0.1), per_layer=True)
    rows = _fit_lightning(tmp_path, module, callback)
    logged = [r for r in rows if r.get("emergence/log10@0.05")]
    assert len(logged) == 4  # epoch 0 (before training) and after each of 3 epochs
    values = [float(r[k]) for r in logged for k in r if k.startswith("emergence/") and r[k] != ""]
    assert values and _finite_floats(values)
    assert "emergence/active_fraction/net.0@0.05" in logged[0]
    history = callback.monitor.history
    assert [r.epoch for r in history] == [0, 1, 2, 3]
    for row, rec in zip(logged, history, strict=True):
        assert float(row["emergence/log10@0.05"]) == pytest.approx(rec.log10, rel=1e-6)
    fresh = emergence.measure_model(module, probe, thresholds=[0.1])
    assert history[-1].log10 == pytest.approx(fresh.result.log10, rel=1e-9)
    assert history[-1].at(0.1).log10 == pytest.approx(fresh.thresholds[0][1].log10, rel=1e-9)
    assert history[-1].metrics["train_loss"] > 0  # the run's own logged metric rides along
    ds = callback.monitor.to_dataset()
    assert ds["train_loss"].sel(epoch=3).item() == pytest.approx(history[-1].metrics["train_loss"])


def test_lightning_callback_logs_zero_emergence_as_a_number(tmp_path):
    from emergence.integrations.lightning import EmergenceCallback

    callback = EmergenceCallback(torch.rand(16, 8), every_n_epochs=2)
    rows = _fit_lightning(tmp_path, _lightning_module(dead=True), callback, epochs=2)
    logged = [r for r in rows if r.get("emergence/E@0.05")]
    assert [float(r["emergence/E@0.05"]) for r in logged] == [0.0, 0.0]  # epochs 0 and 2
    assert all(r.get("emergence/log10@0.05", "") == "" for r in rows)  # log10 0 is not a number: not logged
    with pytest.raises(ConfigError, match="every_n_epochs"):
        EmergenceCallback(torch.rand(4, 8), every_n_epochs=0)


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=24, length=12, vocab=64):
        g = torch.Generator().manual_seed(2)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)

    def __len__(self):
        return self.ids.shape[0]

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0,
                                  eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def _train_hf(tmp_path, model, callback=None, attach=True, epochs=2):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), num_train_epochs=epochs,
                                          per_device_train_batch_size=8, learning_rate=5e-3, report_to=[],
                                          logging_strategy="epoch", save_strategy="no", use_cpu=True,
                                          disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens())
    if attach:
        callback.set_trainer(trainer)
    trainer.add_callback(callback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    return trainer


@pytest.mark.parametrize("attach", [True, False])
def test_transformers_callback_logs_through_the_trainer(tmp_path, attach):
    from emergence.integrations.transformers import EmergenceCallback

    model = _gpt2()
    probe = _Tokens(n=8).ids
    callback = EmergenceCallback(probe)
    trainer = _train_hf(tmp_path, model, callback, attach=attach)
    logged = [e for e in trainer.state.log_history if "emergence/log10@0.05" in e]
    assert len(logged) == 3  # when training begins, and after each of 2 epochs
    assert len([e for e in trainer.state.log_history if "loss" in e]) == 2  # the Trainer's own epoch logs stay
    assert _finite_floats([v for e in logged for k, v in e.items() if k.startswith("emergence/")])
    history = callback.monitor.history
    assert [r.epoch for r in history] == [0, 1, 2]
    for entry, rec in zip(logged, history, strict=True):
        assert entry["emergence/log10@0.05"] == rec.log10
    assert history[-1].metrics["train_loss"] > 0  # the Trainer's logged loss rides along
    fresh = emergence.measure_model(model, probe)
    assert history[-1].log10 == pytest.approx(fresh.result.log10, rel=1e-9)
    assert history[-1].layers[0] == "transformer.wte"  # the model's own module names
