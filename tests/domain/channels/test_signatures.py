"""Signing and verification of Twilio, WeChat and Nudge signatures: round trips, and any tampering fails."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.channels.signatures import (
    SignatureInvalid,
    nudge_signature,
    twilio_signature,
    verify_nudge,
    verify_twilio,
    verify_wechat,
    wechat_signature,
)

secrets_ = st.text(min_size=1, max_size=40)
bodies = st.binary(max_size=300)
params = st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=20)), max_size=6)


def test_twilio_signature_matches_twilios_documented_example() -> None:
    # twilio.com/docs/usage/security#validating-requests: this URL, these parameters and token sign to this value.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    form = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
            "To": "+18005551212"}
    assert twilio_signature("12345", url, form) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


@given(secret=secrets_, url=st.text(min_size=1, max_size=60), form=params)
def test_twilio_round_trip_regardless_of_parameter_order(secret: str, url: str, form: list[tuple[str, str]]) -> None:
    signature = twilio_signature(secret, url, form)
    verify_twilio(secret, url, list(reversed(form)), signature)


@given(secret=secrets_, form=params, data=st.data())
def test_twilio_any_changed_parameter_or_url_fails(secret: str, form: list[tuple[str, str]],
                                                   data: st.DataObject) -> None:
    url = "https://nudge.example/v1/webhooks/twilio"
    signature = twilio_signature(secret, url, form)
    with pytest.raises(SignatureInvalid):
        verify_twilio(secret, url + "x", form, signature)
    with pytest.raises(SignatureInvalid):
        verify_twilio(secret, url, [*form, ("Extra", "1")], signature)
    with pytest.raises(SignatureInvalid):
        verify_twilio(secret + "x", url, form, signature)
    with pytest.raises(SignatureInvalid):
        verify_twilio(secret, url, form, None)


@given(token=st.text(alphabet="abcdef0123456789", min_size=3, max_size=32), nonce=st.text(max_size=12),
       t=st.integers(1_600_000_000, 1_900_000_000))
def test_wechat_round_trip_and_tampering(token: str, nonce: str, t: int) -> None:
    signature = wechat_signature(token, str(t), nonce)
    verify_wechat(token, signature, str(t), nonce, now=t + 10, tolerance=300)
    with pytest.raises(SignatureInvalid):
        verify_wechat(token, signature, str(t + 1), nonce, now=t, tolerance=300)
    with pytest.raises(SignatureInvalid):
        verify_wechat(token + "0", signature, str(t), nonce, now=t, tolerance=300)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        verify_wechat(token, signature, str(t), nonce, now=t + 301, tolerance=300)


def test_wechat_signature_is_sha1_of_the_sorted_parts() -> None:
    import hashlib

    assert wechat_signature("token", "1700000000", "42") == hashlib.sha1(b"1700000000" b"42" b"token").hexdigest()


@given(secret=secrets_, body=bodies, t=st.integers(0, 2_000_000_000))
def test_nudge_round_trip(secret: str, body: bytes, t: int) -> None:
    header = nudge_signature(secret, body, t)
    assert verify_nudge(secret, header, body, now=t, tolerance=300) == t


@given(secret=secrets_, body=bodies.filter(bool), t=st.integers(0, 2_000_000_000), data=st.data())
def test_nudge_tampering_any_byte_of_the_body_fails(secret: str, body: bytes, t: int, data: st.DataObject) -> None:
    header = nudge_signature(secret, body, t)
    i = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1:]
    with pytest.raises(SignatureInvalid):
        verify_nudge(secret, header, tampered, now=t, tolerance=300)


@given(secret=secrets_, body=bodies, t=st.integers(0, 2_000_000_000), data=st.data())
def test_nudge_tampering_any_byte_of_the_header_fails(secret: str, body: bytes, t: int, data: st.DataObject) -> None:
    header = nudge_signature(secret, body, t)
    i = data.draw(st.integers(0, len(header) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != header[i]))
    tampered = header[:i] + replacement + header[i + 1:]
    with pytest.raises(SignatureInvalid):
        verify_nudge(secret, tampered, body, now=t, tolerance=300)


def test_nudge_stale_or_future_timestamps_are_refused() -> None:
    header = nudge_signature("s", b"{}", 1_700_000_000)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        verify_nudge("s", header, b"{}", now=1_700_000_301, tolerance=300)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        verify_nudge("s", header, b"{}", now=1_699_999_699, tolerance=300)
    assert verify_nudge("s", header, b"{}", now=1_700_000_300, tolerance=300) == 1_700_000_000


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "v1=00", "t=1", "t=1,v1="])
def test_nudge_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        verify_nudge("s", header, b"{}", now=1, tolerance=300)


def test_nudge_accepts_any_of_several_v1_signatures_during_a_secret_rotation() -> None:
    old, new = nudge_signature("old", b"{}", 100), nudge_signature("new", b"{}", 100)
    both = f"{new},v1={old.partition(',v1=')[2]}"
    assert verify_nudge("old", both, b"{}", now=100, tolerance=300) == 100
