"""Settings: whole-form validation without widgets, QSettings round trip, refusal leaves old values."""

from __future__ import annotations

import pytest

from app.services.settings_model import AppSettings, SettingsError, parse_settings
from app.services.settings_store import SettingsStore


def test_valid_form_parses_every_section(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    s = parse_settings(
        {
            "listener.aet": "READROOM1",
            "listener.port": "11113",
            "listener.host": "0.0.0.0",
            "listener.allowed_aets": "CT1, MR_2 PACS",
            "listener.tls_cert": str(tmp_path / "cert.pem"),
            "listener.tls_key": str(tmp_path / "key.pem"),
            "listener.tls_no_client_auth": "true",
            "listener.acse_timeout": "45",
            "ris.host": "ris.example.org",
            "ris.port": "2576",
            "ris.sending_facility": "RAD",
            "model.folder": str(tmp_path),
            "model.device": "CPU",
            "model.quantization": "int8",
            "general.create_demo_if_empty": "yes",
        }
    )
    assert (s.listener.aet, s.listener.port, s.listener.host) == ("READROOM1", 11113, "0.0.0.0")
    assert s.listener.allowed_aets == ("CT1", "MR_2", "PACS")
    assert s.listener.tls_enabled and s.listener.acse_timeout == 45
    assert (s.ris.host, s.ris.port, s.ris.sending_facility) == ("ris.example.org", 2576, "RAD")
    assert (s.model.device, s.model.quantization) == ("cpu", "int8")
    assert s.general.create_demo_if_empty is True


def test_invalid_form_names_every_bad_field(tmp_path):
    with pytest.raises(SettingsError) as info:
        parse_settings(
            {
                "listener.aet": "A" * 17,
                "listener.port": "70000",
                "listener.host": "not-an-ip",
                "listener.allowed_aets": "OK, BAD\\AE",
                "listener.tls_cert": str(tmp_path / "cert.pem"),
                "listener.acse_timeout": "0",
                "ris.port": "abc",
                "ris.sending_facility": "RAD|X",
                "model.folder": str(tmp_path / "missing"),
                "model.device": "tpu",
                "model.quantization": "q3",
            }
        )
    assert set(info.value.errors) == {
        "listener.aet",
        "listener.port",
        "listener.host",
        "listener.allowed_aets",
        "listener.tls_cert",
        "listener.tls_key",
        "listener.acse_timeout",
        "ris.port",
        "ris.sending_facility",
        "model.folder",
        "model.device",
        "model.quantization",
    }
    assert "65535" in info.value.errors["listener.port"]


def test_tls_key_without_certificate_is_refused(tmp_path):
    (tmp_path / "key.pem").write_text("x")
    with pytest.raises(SettingsError) as info:
        parse_settings({"listener.tls_key": str(tmp_path / "key.pem")})
    assert "listener.tls_cert" in info.value.errors


def test_tls_without_a_ca_is_refused_unless_any_client_is_explicitly_accepted(tmp_path):
    from app.services.listener_supervisor import listener_command

    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    tls = {"listener.tls_cert": str(tmp_path / "cert.pem"), "listener.tls_key": str(tmp_path / "key.pem")}
    with pytest.raises(SettingsError) as info:
        parse_settings(tls)
    assert set(info.value.errors) == {"listener.tls_ca"}
    assert "any client" in info.value.errors["listener.tls_ca"]

    open_tls = parse_settings({**tls, "listener.tls_no_client_auth": "true"}).listener
    assert open_tls.tls_open_to_any_client
    assert listener_command(open_tls, tmp_path)[-1] == "--tls-no-client-auth"
    command = listener_command(open_tls, tmp_path)
    assert command[command.index("--acse-timeout") + 1] == "30"  # storescp's default ARTIM
    with_ca = parse_settings({**tls, "listener.tls_ca": str(tmp_path / "ca.pem")}).listener
    assert not with_ca.tls_open_to_any_client and "--tls-no-client-auth" not in listener_command(
        with_ca, tmp_path
    )
    with pytest.raises(SettingsError) as info:
        parse_settings(
            {**tls, "listener.tls_ca": str(tmp_path / "ca.pem"), "listener.tls_no_client_auth": "1"}
        )
    assert set(info.value.errors) == {"listener.tls_no_client_auth"}

    # a stored file from before the choice existed keeps its TLS files (the listener says why it
    # cannot start) instead of silently falling back to a plain listener
    store = SettingsStore()
    store.write_values(tls)
    assert store.load().listener.tls_cert == str(tmp_path / "cert.pem")
    assert "listener.tls_ca" in store.load_errors


def test_round_trip_through_the_file_and_refusal_keeps_old_values(tmp_path):
    store = SettingsStore()
    assert store.load() == AppSettings()
    saved = store.apply_form(
        {
            "listener.aet": "ROOM7",
            "listener.port": "10400",
            "ris.host": "10.1.2.3",
            "listener.allowed_aets": "CT1 CT2",
        }
    )
    reloaded = SettingsStore().load()  # a fresh store reads the INI file back
    assert reloaded == saved
    assert reloaded.listener.allowed_aets == ("CT1", "CT2") and reloaded.ris.host == "10.1.2.3"
    with pytest.raises(SettingsError):
        store.apply_form({"listener.aet": "NEWNAME", "listener.port": "0"})  # one valid, one bad field
    assert SettingsStore().load().listener.aet == "ROOM7"  # nothing half-applied


def test_hand_edited_invalid_value_falls_back_alone_and_the_rest_is_kept(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    store = SettingsStore()
    store.apply_form({"listener.aet": "ROOM7", "ris.host": "10.1.2.3", "model.folder": str(model)})
    store.write_values({"listener.port": "not-a-port"})
    model.rmdir()  # e.g. the model drive is not mounted today
    fresh = SettingsStore()
    loaded = fresh.load()
    assert loaded.listener.port == AppSettings().listener.port
    assert loaded.model.folder == str(model)  # kept: the model service says it is not found
    assert (loaded.listener.aet, loaded.ris.host) == ("ROOM7", "10.1.2.3")  # nothing else lost
    assert set(fresh.load_errors) == {"listener.port", "model.folder"}
    assert "'not-a-port'" in fresh.load_errors["listener.port"]


def test_missing_tls_files_are_kept_so_tls_is_never_silently_dropped(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    store = SettingsStore()
    store.apply_form(
        {"listener.tls_cert": str(cert), "listener.tls_key": str(key), "listener.tls_no_client_auth": "true"}
    )
    cert.unlink()
    fresh = SettingsStore()
    loaded = fresh.load()
    assert loaded.listener.tls_enabled and loaded.listener.tls_cert == str(cert)
    assert "file not found" in fresh.load_errors["listener.tls_cert"]


def test_cross_field_error_in_the_file_resets_only_its_section():
    store = SettingsStore()
    store.apply_form({"listener.aet": "ROOM7"})
    store.write_values({"ris.enabled": "true"})  # enabled without a host
    fresh = SettingsStore()
    loaded = fresh.load()
    assert loaded.ris == AppSettings().ris and loaded.listener.aet == "ROOM7"
    assert "ris.host" in fresh.load_errors


def test_new_switches_are_validated_and_round_trip():
    store = SettingsStore()
    assert (AppSettings().ris.enabled, AppSettings().general.predraft) == (False, False)
    assert AppSettings().general.outbox_retention_days == 30
    saved = store.apply_form(
        {
            "ris.enabled": "true",
            "ris.host": "ris.example.org",
            "general.predraft": "true",
            "general.outbox_retention_days": "90",
        }
    )
    reloaded = SettingsStore().load()
    assert reloaded == saved
    assert (reloaded.ris.enabled, reloaded.general.predraft, reloaded.general.outbox_retention_days) == (
        True,
        True,
        90,
    )
    with pytest.raises(SettingsError) as info:
        parse_settings(
            {
                "ris.enabled": "true",
                "ris.host": "",
                "general.predraft": "maybe",
                "general.outbox_retention_days": "0",
            }
        )
    assert set(info.value.errors) == {"ris.host", "general.predraft", "general.outbox_retention_days"}
    with pytest.raises(SettingsError, match="outbox_retention_days"):
        parse_settings({"general.outbox_retention_days": "thirty"})


def test_settings_offer_every_quantization_the_runtime_loads():
    from app.services.settings_model import QUANTIZATIONS
    from inference.quantization import QUANTIZATIONS as RUNTIME

    assert set(QUANTIZATIONS) == {"auto", *RUNTIME}  # auto: the runtime plans one of them
