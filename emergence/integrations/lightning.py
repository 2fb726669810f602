"""A Lightning callback that measures emergence every few epochs and logs it through ``pl_module.log``.

Examples
--------
::

    from lightning.pytorch import Trainer
    from emergence.integrations.lightning import EmergenceCallback

    callback = EmergenceCallback(probe_batch, every_n_epochs=1)
    Trainer(max_epochs=10, callbacks=[callback]).fit(module, loader)
    callback.monitor.to_dataset()      # the run's history in the sweep schema

Logged per threshold tau (names as :meth:`emergence.MonitorRecord.scalars` makes them):
``emergence/E@tau``, ``emergence/log10@tau``, ``emergence/relative_log10@tau``, ``emergence/hidden_log10@tau``,
``emergence/active_fraction@tau``, and ``emergence/num_edges``. After an epoch the values go through
``pl_module.log`` (so ``ModelCheckpoint`` or ``EarlyStopping`` can monitor them too); the measurement before
training (epoch 0) goes to the trainer's loggers directly, at step 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from emergence.defaults import DEFAULT_AGGREGATION, DEFAULT_GRANULARITY, DEFAULT_OUTPUTS, DEFAULT_THRESHOLD
from emergence.experiments.monitor import METRICS, Monitor, MonitorRecord
from emergence.integrations._common import check_every, on_device

try:
    from lightning.pytorch import Callback
except ImportError as exc:
    raise ImportError("emergence.integrations.lightning needs Lightning: pip install lightning") from exc

__all__ = ["EmergenceCallback"]


class EmergenceCallback(Callback):
    """Measure the module's emergence on a fixed probe batch at the start and every ``every_n_epochs`` epochs.

    Parameters
    ----------
    probe : torch.Tensor or tuple of torch.Tensor
        The fixed probe batch (moved to the module's device).
    every_n_epochs : int, default 1
    thresholds, granularity, outputs, weighted, aggregation
        As in :class:`emergence.Monitor`.
    prefix : str, default "emergence/"
        Start of every logged name.
    per_layer : bool, default False
        Also log each layer's active fraction and share of E.
    module : callable, optional
        Which ``nn.Module`` to measure, given the LightningModule (default: the LightningModule itself,
        e.g. ``lambda m: m.model`` for a wrapped network).

    Attributes
    ----------
    monitor : emergence.Monitor or None
        Made when training starts; its ``history`` holds every record.
    """

    def __init__(self, probe: torch.Tensor | Sequence[torch.Tensor], *, every_n_epochs: int = 1,
                 thresholds: Sequence[float] = (DEFAULT_THRESHOLD,), granularity: str = DEFAULT_GRANULARITY,
                 outputs: str = DEFAULT_OUTPUTS, weighted: bool = False, aggregation: str = DEFAULT_AGGREGATION,
                 prefix: str = "emergence/", per_layer: bool = False,
                 module: Callable[[Any], torch.nn.Module] | None = None) -> None:
        super().__init__()
        self.probe = probe
        self.every_n_epochs = check_every(every_n_epochs)
        self.options: dict[str, Any] = dict(thresholds=tuple(thresholds), granularity=granularity, outputs=outputs,
                            weighted=weighted, aggregation=aggregation)
        self.prefix, self.per_layer, self.module = prefix, per_layer, module
        self.monitor: Monitor | None = None

    def _target(self, pl_module: Any) -> torch.nn.Module:
        return pl_module if self.module is None else self.module(pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        target = self._target(pl_module)
        self.monitor = Monitor(target, on_device(self.probe, pl_module.device), device=pl_module.device, **self.options)
        self._measure(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = int(trainer.current_epoch) + 1
        if epoch % self.every_n_epochs == 0:
            self._measure(trainer, pl_module, epoch)

    def _measure(self, trainer: Any, pl_module: Any, epoch: int) -> MonitorRecord:
        assert self.monitor is not None  # made in on_train_start
        logged = trainer.callback_metrics
        metrics = {k: float(logged[k]) for k in METRICS if k in logged}
        record = self.monitor(self._target(pl_module), epoch=epoch, **metrics)
        scalars = record.scalars(self.prefix, per_layer=self.per_layer)
        if epoch == 0:
            # before the first epoch: straight to the loggers at step 0 (pl_module.log here would be averaged
            # with the value logged at the end of epoch 1, which Lightning files under the same epoch)
            for logger in trainer.loggers:
                logger.log_metrics({**scalars, "epoch": 0.0}, step=int(trainer.global_step))
        else:
            for name, value in scalars.items():
                pl_module.log(name, value, on_step=False, on_epoch=True, logger=True)
        return record
