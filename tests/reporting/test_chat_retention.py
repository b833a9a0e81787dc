"""Chat histories (PHI) follow the outbox's retention: deleted once last written more than the
configured days ago, never while their study is open."""

from __future__ import annotations

import os
import time

import pytest

from app.assistant.chat import ChatMessage, ChatSession
from app.reporting.outbox import DAY_SECONDS


def history(study_uid: str, age_days: float, now: float) -> ChatSession:
    session = ChatSession(study_uid)
    session.history = [ChatMessage("user", "Any nodule?"), ChatMessage("assistant", "No nodule.")]
    session.save()
    stamp = now - age_days * DAY_SECONDS
    os.utime(ChatSession.path_for(study_uid), (stamp, stamp))
    return session


def test_histories_older_than_the_retention_are_deleted_open_and_recent_ones_kept():
    now = time.time()
    history("1.2.1", 31, now)  # past 30 days: deleted
    history("1.2.2", 29, now)  # within: kept
    history("1.2.3", 400, now)  # past, but its study is open: kept
    assert ChatSession.purge_expired(30, keep={"1.2.3"}, now=now) == ["1.2.1"]
    assert not ChatSession.path_for("1.2.1").exists()
    assert [m.text for m in ChatSession.load("1.2.2").history] == ["Any nodule?", "No nodule."]
    assert ChatSession.load("1.2.3").restored == 2
    assert sorted(ChatSession.purge_expired(7, keep=set(), now=now)) == ["1.2.2", "1.2.3"]
    assert not ChatSession.path_for("1.2.2").exists() and not ChatSession.path_for("1.2.3").exists()
    assert ChatSession.purge_expired(7, keep=set(), now=now) == []


def test_a_history_written_again_starts_its_retention_anew():
    now = time.time()
    session = history("1.2.4", 40, now)
    session.history.append(ChatMessage("user", "And the liver?"))
    session.save()  # a new question today
    assert ChatSession.purge_expired(30, keep=set()) == []
    assert len(ChatSession.load("1.2.4").history) == 3


def test_retention_below_one_day_is_refused_and_nothing_deleted():
    now = time.time()
    history("1.2.5", 99, now)
    with pytest.raises(ValueError, match="retention_days"):
        ChatSession.purge_expired(0, keep=set())
    assert ChatSession.path_for("1.2.5").exists()
