"""Risk rules: the strictest verdict wins, blocklist first, limits count the action being judged."""

from __future__ import annotations

from domain.ledger.risk import Dimension, Usage, VelocityRule, Verdict, judge, subjects

COUNT = VelocityRule(1, "credit", Dimension.CONTACT, 3600, 3, None, Verdict.REFUSE)
AMOUNT = VelocityRule(2, "credit", Dimension.IP, 86400, None, 100, Verdict.REVIEW)


def test_under_every_limit_the_action_is_allowed() -> None:
    assert judge([COUNT, AMOUNT], {1: Usage(2, 10), 2: Usage(2, 60)}, 40)[0] is Verdict.ALLOW


def test_the_action_that_crosses_a_limit_gets_that_rules_verdict_and_refuse_beats_review() -> None:
    assert judge([COUNT, AMOUNT], {2: Usage(1, 90)}, 11)[0] is Verdict.REVIEW
    verdict, reason = judge([AMOUNT, COUNT], {1: Usage(3, 0), 2: Usage(1, 90)}, 11)
    assert verdict is Verdict.REFUSE and "rule 1" in reason


def test_a_blocklisted_subject_is_refused_whatever_the_rules_say() -> None:
    verdict, reason = judge([], {}, 1, [(Dimension.DEVICE, "emu-1")])
    assert verdict is Verdict.REFUSE and "blocklist" in reason


def test_only_the_subjects_given_are_judged() -> None:
    assert subjects(7, None, "10.0.0.1") == {Dimension.CONTACT: "7", Dimension.IP: "10.0.0.1"}
