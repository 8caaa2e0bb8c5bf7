"""Coupon rewards in the definition: a coupon task names its template and no program (and the reverse for points),
grants at most MAX_COUPONS coupons per completion, and survives the JSON round trip; the toast names the coupon."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.tasks.definitions import MAX_COUPONS, InvalidTask, RewardType, from_mapping, to_mapping
from domain.tasks.notices import reward_notice

BASE = {"name": "Review", "user_action": "review", "reward_count": 1}


@pytest.mark.parametrize(("fields", "field"), [
    ({"reward_type": "coupon"}, "coupon_template_id:"),
    ({"reward_type": "coupon", "coupon_template_id": 3, "program_id": 1}, "program_id:"),
    ({"reward_type": "coupon", "coupon_template_id": 3, "reward_count": MAX_COUPONS + 1}, "reward_count:"),
    ({"reward_type": "coupon", "coupon_template_id": 3, "kind": "ladder",
      "ladder": [{"num": 1, "reward": 1}, {"num": 2, "reward": MAX_COUPONS + 1}]}, "reward_count:"),
    ({}, "program_id:"),
    ({"program_id": 1, "coupon_template_id": 3}, "coupon_template_id:"),
])
def test_invalid_reward_names_the_field(fields: dict, field: str) -> None:
    with pytest.raises(InvalidTask) as exc:
        from_mapping(BASE | fields)
    assert str(exc.value).startswith(field)


@given(count=st.integers(0, MAX_COUPONS), template=st.integers(1, 2**40))
def test_a_coupon_definition_round_trips(count: int, template: int) -> None:
    d = from_mapping(BASE | {"reward_type": "coupon", "coupon_template_id": template, "reward_count": count})
    assert d.reward_type is RewardType.COUPON and d.program_id is None
    assert from_mapping(to_mapping(d)) == d


def test_the_toast_names_the_coupon_and_its_codes() -> None:
    n = reward_notice(reference="reward:1:2:once:1", contact_id=2, task_id=1, task_name="Review", amount=1,
                      unit="points", claimable=False, claim_deadline=None, chain=("inbox",), coupon="¥20 off",
                      codes=["7K3M-Q9XA-2B4F-H"])
    assert n.title == "You got a coupon: ¥20 off" and "7K3M-Q9XA-2B4F-H" in n.body
