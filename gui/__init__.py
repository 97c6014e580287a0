"""The operator console and the participant viewer.

Modules (the first three import no Qt):

- :mod:`gui.model` — :class:`~gui.model.SessionModel`, the display state built from telemetry
  messages (:mod:`gui.state` holds its records);
- :mod:`gui.receiver` — the background thread that subscribes to the telemetry hub;
- :mod:`gui.control` — the client of the replay source's control channel;
- :mod:`gui.console` — the operator console window (panels in :mod:`gui.slices`,
  :mod:`gui.plots`, :mod:`gui.panels`; theme and image helpers in :mod:`gui.qt`);
- :mod:`gui.viewer` — the participant's feedback window;
- :mod:`gui.cli` — ``mindeye-rt console`` / ``mindeye-rt viewer`` and
  :func:`~gui.cli.launch_console`;
"""
