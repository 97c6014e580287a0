"""The operator console and the participant viewer.

Modules (the first three, and the model's parts, import no Qt):

- :mod:`gui.model` — :class:`~gui.model.SessionModel`, the display state built from telemetry
  messages (:mod:`gui.state` holds its records).  Its parts: :mod:`gui.model_state` (state,
  lock, resets, log, dataset), :mod:`gui.model_runs` (run lifecycle, volumes, ROI trace),
  :mod:`gui.model_trials` (trials, retrievals, reconstructions), :mod:`gui.model_health`
  (status and log messages, stage health), :mod:`gui.values` (lenient reads of message
  fields, image checks, display ranges);
- :mod:`gui.receiver` — the background thread that subscribes to the telemetry hub;
- :mod:`gui.control` — the client of the replay source's control channel;
- :mod:`gui.console` — the operator console window (panels in :mod:`gui.slices`,
  :mod:`gui.plots`, :mod:`gui.retrieval_panel`, :mod:`gui.panels`; theme and image helpers
  in :mod:`gui.qt`);
- :mod:`gui.viewer` — the participant's feedback window;
- :mod:`gui.cli` — ``mindeye-rt console`` / ``mindeye-rt viewer`` and
  :func:`~gui.cli.launch_console`;
"""
