"""The workstation locks after idle time (Settings > General > lock after minutes).

After that long without a key press, click or wheel anywhere in the app, an opaque screen covers
the main window (the images and report under it are hidden) and takes every key and click until
a configured workstation user enters their password; an open dialog (e.g. a sign-off waiting
for its password) is cancelled first, so nothing is signed by whoever comes next. With no users configured there is nobody
who could unlock it, so it does not lock (and says so in the log).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QLabel, QPushButton, QVBoxLayout, QWidget

from app.gui.credentials import CredentialsForm
from app.reporting.users import AuthenticationError, UserError, UserStore

log = logging.getLogger(__name__)
_INPUT = {
    QEvent.Type.KeyPress,
    QEvent.Type.KeyRelease,
    QEvent.Type.ShortcutOverride,
    QEvent.Type.Shortcut,
    QEvent.Type.MouseButtonPress,
    QEvent.Type.MouseButtonRelease,
    QEvent.Type.MouseButtonDblClick,
    QEvent.Type.Wheel,
}
_ACTIVITY = _INPUT | {QEvent.Type.MouseMove}


class LockScreen(QWidget):
    """What covers the window while locked: the user form and an Unlock button."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("lockScreen")
        self.setAutoFillBackground(True)
        self.setStyleSheet("#lockScreen{background:#101418;} QLabel{color:#e0e0e0;}")
        self.title = QLabel("Workstation locked. Enter your password to continue.", self)
        self.message = QLabel("", self)
        self.unlock_button = QPushButton("Unlock", self)
        self.form: CredentialsForm | None = None
        self._layout = QVBoxLayout(self)
        self._layout.addStretch(1)
        self._layout.addWidget(self.title)
        self._layout.addWidget(self.message)
        self._layout.addWidget(self.unlock_button)
        self._layout.addStretch(1)

    def reset(self, form: CredentialsForm) -> None:
        if self.form is not None:
            self.form.deleteLater()
        self.form = form
        self._layout.insertWidget(2, form)
        self.message.setText("")


class WorkstationLock(QObject):
    """Watches the application's input and locks ``window`` after ``timeout_ms`` idle (0: never)."""

    def __init__(self, window: QWidget, users: UserStore | None = None, timeout_ms: int = 0):
        super().__init__(window)
        self.window = window
        self.users = users or UserStore()
        self.screen = LockScreen(window)
        self.screen.hide()
        self.screen.unlock_button.clicked.connect(self.unlock)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.lock)
        self.set_timeout_ms(timeout_ms)
        QApplication.instance().installEventFilter(self)  # dropped by Qt when this object goes

    @property
    def locked(self) -> bool:
        return self.screen.isVisible()

    def set_timeout_ms(self, timeout_ms: int) -> None:
        self.timer.setInterval(max(0, timeout_ms))
        if timeout_ms > 0 and not self.locked:
            self.timer.start()
        else:
            self.timer.stop()

    def lock(self) -> bool:
        try:
            users = self.users.list()
        except UserError as exc:
            users = []
            log.error("lock: %s", exc)
        if not users:
            log.warning("idle lock skipped: no workstation users configured (hulu-workstation users add)")
            return False
        for _ in range(8):  # a modal dialog would keep the lock screen from getting input: cancel it
            modal = QApplication.activeModalWidget()
            if modal is None:
                break
            if isinstance(modal, QDialog):
                modal.reject()
            else:
                modal.close()
        self.screen.reset(CredentialsForm(users, self.screen))
        self.screen.form.password.returnPressed.connect(self.unlock)
        self.screen.setGeometry(self.window.rect())
        self.screen.show()
        self.screen.raise_()
        self.screen.form.password.setFocus()
        log.info("workstation locked after %d s idle", self.timer.interval() // 1000)
        return True

    def unlock(self) -> bool:
        form = self.screen.form
        if form is None:
            return False
        try:
            user = self.users.authenticate(form.login, form.take_password())
        except (AuthenticationError, UserError):
            self.screen.message.setText("Wrong user or password.")
            return False
        self.screen.hide()
        log.info("workstation unlocked by user %s", user.login)
        self.set_timeout_ms(self.timer.interval())
        return True

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if watched is self.window and kind == QEvent.Type.Resize and self.locked:
            self.screen.setGeometry(self.window.rect())
        if kind not in _ACTIVITY:
            return False
        if not self.locked:
            if self.timer.interval() > 0:
                self.timer.start()  # input: idle time starts again
            return False
        if not isinstance(watched, QWidget):
            return False  # the window system's QWindow hands the event on to a widget
        inside = watched is self.screen or self.screen.isAncestorOf(watched)
        return kind in _INPUT and not inside  # while locked only the lock screen gets input
