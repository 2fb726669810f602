"""A `transformers` ``TrainerCallback`` that measures emergence every few epochs and logs it with ``Trainer.log``.

Examples
--------
::

    from transformers import Trainer
    from emergence.integrations.transformers import EmergenceCallback

    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.add_callback(EmergenceCallback(probe_ids, trainer))
    trainer.train()

With the trainer given, values go through ``Trainer.log``: into ``trainer.state.log_history`` (and the
checkpoint's ``trainer_state.json``) and to every ``report_to`` integration (TensorBoard, W&B, ...). Without
it (a callback passed as ``Trainer(callbacks=[...])`` before the trainer exists: call :meth:`set_trainer`
later), values go into ``state.log_history`` only. Names are those of :meth:`emergence.MonitorRecord.scalars`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.experiments.monitor import Monitor, MonitorRecord
from emergence.integrations._common import check_every, on_device

try:
    from transformers import TrainerCallback
except ImportError as exc:
    raise ImportError("emergence.integrations.transformers needs transformers: pip install transformers") from exc

__all__ = ["EmergenceCallback"]

#: The Trainer's own log names that fill a record's metrics (what the run logged in that epoch).
_FROM_LOGS = {"loss": "train_loss", "train_loss": "train_loss", "eval_loss": "test_loss",
              "eval_accuracy": "test_accuracy"}


class EmergenceCallback(TrainerCallback):
    """Measure the model's emergence on a fixed probe batch when training begins and every ``every_n_epochs``.

    Parameters
    ----------
    probe : torch.Tensor or tuple of torch.Tensor
        The fixed probe batch: token ids ``[batch, length]`` for a language model, pixel values for a vision
        model (a tuple for several inputs); moved to the model's device. A model whose output holds a cache
        is measured up to its first output (the logits).
    trainer : transformers.Trainer, optional
        Log through it (see the module docs); or give it later with :meth:`set_trainer`.
    every_n_epochs : int, default 1
    thresholds, granularity, outputs, weighted, aggregation
        As in :class:`emergence.Monitor`.
    prefix : str, default "emergence/"
    per_layer : bool, default False
        Also log each layer's active fraction and share of E.

    Attributes
    ----------
    monitor : emergence.Monitor or None
        Made when training begins; its ``history`` holds every record.
    """

    def __init__(self, probe: torch.Tensor | Sequence[torch.Tensor], trainer: Any = None, *,
                 every_n_epochs: int = 1, thresholds: Sequence[float] = (DEFAULT_THRESHOLD,),
                 granularity: str = DEFAULT_GRANULARITY, outputs: str = DEFAULT_OUTPUTS, weighted: bool = False,
                 aggregation: str = DEFAULT_AGGREGATION, prefix: str = "emergence/", per_layer: bool = False) -> None:
        self.probe, self.trainer = probe, trainer
        self.every_n_epochs = check_every(every_n_epochs)
        self.options: dict[str, Any] = dict(thresholds=tuple(thresholds), granularity=granularity, outputs=outputs,
                            weighted=weighted, aggregation=aggregation)
        self.prefix, self.per_layer = prefix, per_layer
        self.monitor: Monitor | None = None

    def set_trainer(self, trainer: Any) -> None:
        """Log through ``trainer`` from now on (as transformers' own trainer-aware callbacks are given it)."""
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        device = next(model.parameters()).device
        self.monitor = Monitor(model, on_device(self.probe, device), device=device, **self.options)
        self._measure(state, control, model, 0)

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        epoch = int(round(state.epoch or 0))
        if epoch % self.every_n_epochs == 0:
            self._measure(state, control, model, epoch)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        """The Trainer's own loss (and evaluation results) of an epoch join that epoch's record."""
        if self.monitor is None or not self.monitor.history or not logs:
            return
        last = self.monitor.history[-1]
        if int(round(state.epoch or 0)) == last.epoch:
            last.metrics.update({_FROM_LOGS[k]: float(v) for k, v in logs.items() if k in _FROM_LOGS})

    def _measure(self, state: Any, control: Any, model: Any, epoch: int) -> MonitorRecord:
        assert self.monitor is not None  # made in on_train_begin
        record = self.monitor(model, epoch=epoch)
        logs = record.scalars(self.prefix, per_layer=self.per_layer)
        if self.trainer is not None:
            keep = control.should_log  # Trainer.log clears it: the epoch's own log must still happen
            self.trainer.log(dict(logs))
            control.should_log = keep
        else:
            state.log_history.append({**logs, "epoch": float(state.epoch or 0.0), "step": state.global_step})
        return record
