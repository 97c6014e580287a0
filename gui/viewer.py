"""The participant viewer: one window that shows only the feedback image of each trial.

Full screen on a chosen screen (or windowed), black around the image, no text, no cursor.
The feedback is the top-1 retrieved image (``feedback="top1"``), or the newest trial's
reconstruction (``feedback="recon"``: the generated image in ``"full"`` mode, the blurry one in
``"lowlevel"`` mode; it needs a session with a reconstruct stage, and the viewer warns on its
log when trials are decoded and no reconstruct stage reports); until a trial has feedback the
screen stays black.  It runs as its own process (``mindeye-rt viewer --connect ADDR``) and,
like the console, reads telemetry on a receiver thread and polls the model on a timer.
Escape closes it.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from gui.model import SessionModel
from gui.qt import pixmap
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

log = logging.getLogger("mindeye_rt.viewer")

FEEDBACK = ("top1", "recon")
#: what the viewer subscribes to (nothing else reaches the participant's screen)
VIEWER_TOPICS = ("run_start", "retrieval", "recon", "status", "end")


class ViewerWindow(QtWidgets.QWidget):
    """Shows the latest feedback image, centred and scaled to ``fill`` of the shorter side.

    Parameters
    ----------
    model : the session model the receiver feeds.
    feedback : ``"top1"`` (top-1 retrieved image) or ``"recon"`` (reconstruction).
    fill : fraction of the window's shorter side the image spans.
    redraw_hz : how often the model is polled.
    """

    def __init__(
        self,
        model: SessionModel,
        *,
        feedback: str = "top1",
        fill: float = 0.7,
        redraw_hz: float = 10.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.feedback = check_choice(feedback, "feedback", FEEDBACK)
        self.fill = float(check_number(fill, "fill", minimum=0, strict_min=True, maximum=1))
        self.setWindowTitle("mindeye-rt · viewer")
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor("black"))
        self.setPalette(pal)
        self.label = QtWidgets.QLabel(self)
        self.label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        self.image: np.ndarray | None = None  # (H, W, 3) uint8 now shown
        self.shown: tuple[str | None, int | None] | None = None  # (run, trial) of the image
        self._drawn = -1
        self.warned_no_recon = False
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(max(1, int(1000 / redraw_hz)))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def refresh(self) -> None:
        """Poll the model; show new feedback when a trial brings one."""
        snap = self.model.snapshot()
        if (
            self.feedback == "recon"
            and not self.warned_no_recon
            and snap.recon is None
            and snap.recon_stage is None
            and snap.accuracy.decoded
        ):
            self.warned_no_recon = True
            log.warning(
                "the viewer shows reconstructions (--feedback recon), but trials are decoded "
                "and no reconstruct stage reports: the participant's screen stays black. Run "
                "the session with --recon lowlevel, full or auto (not none), or the viewer "
                "with --feedback top1"
            )
        key = "retrieval" if self.feedback == "top1" else "recon"
        if snap.versions[key] == self._drawn:
            return
        self._drawn = snap.versions[key]
        if self.feedback == "top1":
            r = snap.retrieval
            if r is None or r.ids.size == 0 or snap.stimuli is None:
                return
            top = int(r.ids[0])
            if not 0 <= top < len(snap.stimuli):
                return
            self._show(np.asarray(snap.stimuli[top]), (r.run, r.trial))
        elif snap.recon is not None:
            self._show(snap.recon.image, (snap.recon.run, snap.recon.trial))

    def _show(self, image: np.ndarray, trial: tuple[str | None, int | None]) -> None:
        self.image = np.ascontiguousarray(image[..., :3], np.uint8)
        self.shown = trial
        side = int(self.fill * min(self.width(), self.height()))
        self.label.setPixmap(pixmap(self.image, max(side, 1)))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self.image is not None:
            self._show(self.image, self.shown)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.key() == QtCore.Qt.Key.Key_Escape:
            self.close()
        else:
            super().keyPressEvent(event)

    def place(self, screen: int | None = None, *, windowed: bool = False) -> None:
        """Show on screen ``screen`` (index into the system's screens), full screen unless
        ``windowed``.

        Raises
        ------
        ConfigError
            ``screen`` is not the index of a connected screen.
        """
        screens = QtGui.QGuiApplication.screens()
        if screen is not None:
            if (
                isinstance(screen, bool)
                or not isinstance(screen, int)
                or not 0 <= screen < len(screens)
            ):
                raise ConfigError(
                    f"'screen' must be a screen index from 0 to {len(screens) - 1}, got {screen!r}; "
                    "leave it out for the primary screen"
                )
            target = screens[screen]
        else:
            target = QtGui.QGuiApplication.primaryScreen()
        geometry = target.geometry()
        if windowed:
            self.resize(min(900, geometry.width()), min(900, geometry.height()))
            self.move(geometry.center() - self.rect().center())
            self.show()
            return
        self.setGeometry(geometry)
        self.setCursor(QtCore.Qt.CursorShape.BlankCursor)
        self.showFullScreen()
        handle = self.windowHandle()
        if handle is not None:
            handle.setScreen(target)
