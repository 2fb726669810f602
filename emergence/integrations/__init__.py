"""Emergence inside the training frameworks people use: callbacks that measure and log as a run goes.

* :mod:`emergence.integrations.lightning` -- ``EmergenceCallback`` for a Lightning ``Trainer``, logging through
  ``pl_module.log`` (so to every logger the run has: TensorBoard, CSV, W&B ...);
* :mod:`emergence.integrations.transformers` -- ``EmergenceCallback`` for the `transformers` ``Trainer``,
  logging through ``Trainer.log`` (its ``report_to`` integrations and ``state.log_history``).

Both wrap an :class:`emergence.Monitor`: the model is exported once and re-walked whenever its structure
changes, so every logged value equals a fresh :func:`emergence.measure_model` of the model at that moment.
Logged values are always finite numbers (see :meth:`emergence.MonitorRecord.scalars`). Each module imports
its framework when it is imported; nothing else in the toolkit imports them.
"""
