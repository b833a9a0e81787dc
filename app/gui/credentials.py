"""Asking a workstation user for their password: the sign-off dialog (signing asks again every
time, as PACS/RIS products do for final sign-off) and the form the lock screen shows.

Nothing here keeps a password: the form is cleared when it closes, and who may sign is decided
by :meth:`app.reporting.users.UserStore.authenticate`, never by this view.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.reporting.users import User

NO_USERS = (
    "No workstation users are configured: an administrator adds them with `hulu-workstation users add`."
)


class CredentialsForm(QWidget):
    """A user chooser (login and name) and a password field that does not echo."""

    def __init__(self, users: list[User], parent: QWidget | None = None):
        super().__init__(parent)
        self.user_box = QComboBox(self)
        for user in users:
            self.user_box.addItem(f"{user.display_name} ({user.login})", user.login)
        self.user_box.setCurrentIndex(0 if len(users) == 1 else -1)  # several users: each picks theirs
        self.user_box.setPlaceholderText("Choose your name")
        self.password = QLineEdit(self)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("Password or PIN")
        form = QFormLayout(self)
        form.addRow("User", self.user_box)
        form.addRow("Password", self.password)

    @property
    def login(self) -> str:
        return self.user_box.currentData() or ""

    def choose(self, login: str) -> None:
        self.user_box.setCurrentIndex(self.user_box.findData(login))

    def take_password(self) -> str:
        """The typed password; the field is cleared."""
        password = self.password.text()
        self.password.clear()
        return password


class SignDialog(QDialog):
    """ "Sign final" etc.: who signs, with their password, for the patient named on it."""

    def __init__(self, users: list[User], action: str, patient: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(action)
        self.setModal(True)
        self.form = CredentialsForm(users, self)
        intro = QLabel(f"{action} the report for\n{patient}" if users else NO_USERS, self)
        intro.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.sign_button: QPushButton = buttons.addButton(action, QDialogButtonBox.ButtonRole.AcceptRole)
        self.sign_button.setEnabled(bool(users))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.form)
        layout.addWidget(buttons)
        self.form.password.setFocus()
