"""The prebuilt 202 of an accepted delivery is exactly what json_response builds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from valine.github import webhooks
from valine.http import json_response

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"


@given(st.text(alphabet=_ID_CHARS, min_size=1, max_size=100))
def test_the_accepted_answer_matches_json_response(delivery_id: str) -> None:
    assert webhooks._DELIVERY_ID.fullmatch(delivery_id)
    expected = json_response(202, {"status": "accepted", "delivery": delivery_id})
    assert webhooks._accepted(delivery_id) == expected
