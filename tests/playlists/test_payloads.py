"""Retained payloads: what the server encodes a device decodes to the same values, and nothing malformed gets in."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from playlists.payloads import DeviceConfig, Notify, decode_config, decode_notify, encode

ISSUED = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)


def full_config() -> DeviceConfig:
    return DeviceConfig(device="r-0001", channel="ch-0123456789abcdef", language="bo", timezone="Asia/Urumqi",
                        volume=40, report_interval=900, download_window=("22:30", "05:00"), data_budget_mb=200,
                        repository_url="https://lc.county.example/tuf/", media_base_url="https://lc.county.example/",
                        sequence_epoch=3, revoked=True)


@pytest.mark.parametrize("config", [
    DeviceConfig("r-0001", "ch-0123456789abcdef", "cmn"),
    DeviceConfig("t-7", "ch-0123456789abcdef", "zh-Hans", download_window=None, data_budget_mb=0),
    full_config(),
])
def test_config_round_trips(config):
    data = encode(config)
    assert decode_config(data) == config
    assert encode(decode_config(data)) == data


def test_config_bytes_are_canonical():
    assert encode(DeviceConfig("r-1", "ch-1", "cmn")) == (
        b'{"channel":"ch-1","data_budget_mb":null,"device":"r-1","download_window":["00:00","06:00"],'
        b'"language":"cmn","media_base_url":"","report_interval":300,"repository_url":"","revoked":false,'
        b'"sequence_epoch":1,"timezone":"Asia/Shanghai","volume":70}')


def test_config_fields_left_out_take_their_defaults():
    assert decode_config(b'{"device":"r-1","channel":"ch-1","language":"cmn"}') == DeviceConfig("r-1", "ch-1", "cmn")


def _config(**changes) -> bytes:
    data = json.loads(encode(full_config()))
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize("data, field", [
    (_config(device=...), "config.device"),
    (_config(channel="ch/1"), "config.channel"),
    (_config(device="+"), "config.device"),
    (_config(language=...), "config.language"),
    (_config(language="bo_CN"), "config.language"),
    (_config(timezone="Asia/../etc"), "config.timezone"),
    (_config(timezone=""), "config.timezone"),
    (_config(volume=101), "config.volume"),
    (_config(volume=-1), "config.volume"),
    (_config(volume=50.5), "config.volume"),
    (_config(volume=True), "config.volume"),
    (_config(report_interval=0), "config.report_interval"),
    (_config(download_window=["22:00"]), "config.download_window"),
    (_config(download_window=["22:00", "25:00"]), "config.download_window"),
    (_config(download_window=["06:00", "06:00"]), "config.download_window"),
    (_config(download_window="00:00-06:00"), "config.download_window"),
    (_config(data_budget_mb=-5), "config.data_budget_mb"),
    (_config(data_budget_mb="200"), "config.data_budget_mb"),
    (_config(repository_url="file:///etc"), "config.repository_url"),
    (_config(media_base_url=5), "config.media_base_url"),
    (_config(sequence_epoch=0), "config.sequence_epoch"),
    (_config(revoked="no"), "config.revoked"),
    (b'{"device":"r-1","device":"r-2","channel":"ch-1","language":"cmn"}', "config.device"),
    (b"[]", "config"),
    (b"\xff", "config"),
    (b'{"device":"r-1","channel":"ch-1","language":"cmn","volume":NaN}', "config"),
])
def test_decode_config_refuses_bad_fields_naming_them(data, field):
    with pytest.raises(ValueError) as caught:
        decode_config(data)
    assert str(caught.value).startswith(field + ":"), str(caught.value)


def test_notify_round_trips_in_utc():
    notify = Notify("ch-0123456789abcdef", 12, 340, ISSUED)
    data = encode(notify)
    assert data == (b'{"channel":"ch-0123456789abcdef","issued_at":"2026-11-22T03:00:00Z",'
                    b'"manifest_version":12,"timestamp_version":340}')
    assert decode_notify(data) == notify
    beijing = Notify("ch-1", 1, 1, datetime(2026, 11, 22, 11, 0, tzinfo=timezone(timedelta(hours=8))))
    assert decode_notify(encode(beijing)).issued_at == ISSUED


def _notify(**changes) -> bytes:
    data = json.loads(encode(Notify("ch-1", 2, 3, ISSUED)))
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize("data, field", [
    (_notify(channel="ch-1/#"), "notify.channel"),
    (_notify(channel=...), "notify.channel"),
    (_notify(manifest_version=0), "notify.manifest_version"),
    (_notify(manifest_version="2"), "notify.manifest_version"),
    (_notify(timestamp_version=-1), "notify.timestamp_version"),
    (_notify(timestamp_version=...), "notify.timestamp_version"),
    (_notify(issued_at="2026-11-22"), "notify.issued_at"),
    (_notify(issued_at=1700000000), "notify.issued_at"),
    (b"null", "notify"),
])
def test_decode_notify_refuses_bad_fields_naming_them(data, field):
    with pytest.raises(ValueError) as caught:
        decode_notify(data)
    assert str(caught.value).startswith(field + ":"), str(caught.value)


@pytest.mark.parametrize("build, field", [
    (lambda: DeviceConfig("r-1", "ch-1", "cmn", volume=200), "config.volume"),
    (lambda: Notify("ch-1", 1, 1, datetime(2026, 11, 22, 3, 0)), "notify.issued_at"),
])
def test_the_server_cannot_build_a_payload_a_device_would_refuse(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_encode_refuses_other_objects():
    with pytest.raises(TypeError):
        encode({"device": "r-1"})  # type: ignore[arg-type]


def test_fields_from_a_newer_server_are_ignored():
    config = decode_config(_config(brightness=3))
    assert not hasattr(config, "brightness") and config.device
    assert decode_notify(_notify(extra=True)).manifest_version
