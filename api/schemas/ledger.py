"""Points ledger request and response bodies. Amounts are integers; months read `YYYY-MM`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api.params import ID_MAX, INT_MAX, StrictId

MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
# Every kind a stored posting can have: what callers post, what the ledger's own operations post, and
# reconciliation's `restate` (an audited correction of a projection that moves no points).
PostedKind = Literal["credit", "debit", "hold", "commit", "void", "adjust", "expire", "forfeit", "merge_out",
                     "merge_in", "restate"]
POSTED_KINDS = (
    "credit, debit, hold, commit, void, adjust (posted by callers); expire (the expiry sweep, and the expired "
    "part of a hold voided or of points merged after their expiry); forfeit (an erased or closed account); "
    "merge_out, merge_in (an identity merge); restate (reconciliation restating a drifted balance or buckets "
    "from the journal: no entries, no points moved)")


class ProgramIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Coins", "unit": "coins", "expiry_months": 12, "retention_months": 6},
    ]})

    name: str = Field(min_length=1, max_length=200)
    unit: str = Field("points", min_length=1, max_length=40)
    expiry_months: StrictInt | None = Field(
        None, ge=0, le=600, description="Points earned in month M expire at the end of month M + this; null: never.")
    retention_months: StrictInt = Field(12, ge=1, le=120, description="Months of entry detail kept before rollup.")


class ProgramOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    unit: str
    expiry_months: int | None
    retention_months: int
    created_at: datetime


class PostingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"program_id": 1, "reference": "reward:checkin:42:2025-06-01:1", "kind": "credit", "contact_id": 42,
         "amount": 10, "memo": "Daily check-in"},
        {"program_id": 1, "reference": "redeem:order-991:hold", "kind": "hold", "contact_id": 42, "amount": 300,
         "hold_seconds": 900},
        {"program_id": 1, "reference": "redeem:order-991:commit", "kind": "commit", "contact_id": 42,
         "hold_reference": "redeem:order-991:hold"},
    ]})

    program_id: StrictId
    reference: str = Field(min_length=1, max_length=200,
                           description="Unique per program; posting it again returns the original receipt.")
    kind: Literal["credit", "debit", "hold", "commit", "void", "adjust"]
    contact_id: StrictId
    amount: StrictInt = Field(0, ge=-(10**12), le=10**12,
                              description="Positive for credit/debit/hold; signed for adjust; unused for commit/void.")
    earned_month: str | None = Field(
        None, pattern=MONTH, description="Credit (or positive adjust) into this month's bucket (imports). The month "
                                         "must have begun and its points must not have expired under the program's "
                                         "policy (422 otherwise). Default: the current month.")
    hold_reference: str | None = Field(None, max_length=200, description="commit/void: the hold to settle.")
    hold_seconds: StrictInt | None = Field(None, ge=1, le=30 * 86400, description="hold: timeout (default 900).")
    memo: str | None = Field(None, max_length=500)
    device: str | None = Field(None, max_length=200, description="Risk controls: the device the action came from.")
    ip: str | None = Field(None, max_length=64, description="Risk controls: the client's IP address.")


class EntryOut(BaseModel):
    account: str
    amount: int


class PostingOut(BaseModel):
    id: int
    program_id: int
    reference: str
    kind: PostedKind = Field(description=POSTED_KINDS)
    contact_id: int
    amount: int = Field(description="Points the posting moved (the sum of its positive entries); signed for "
                                    "restate.")
    balance_after: int = Field(description="The account's book balance after the posting: points past their "
                                           "expiry count until the expiry sweep moves them (see the account's "
                                           "`expired`).")
    entries: list[EntryOut]
    hold_reference: str | None
    memo: str | None
    created_at: datetime


class BucketOut(BaseModel):
    month: str = Field(description="The month the points were earned.")
    remaining: int
    expires_end_of: str | None = Field(description="The last month these points can be spent.")


class AccountOut(BaseModel):
    program_id: int
    contact_id: int
    balance: int = Field(description="Spendable points (held points and points past their expiry are not "
                                     "included).")
    held: int = Field(description="Points reserved by pending holds.")
    expiring_soon: int = Field(description="Points that expire at the end of this month.")
    expired: int = Field(description="Points past their expiry that the expiry sweep has not moved out yet: not "
                                     "spendable, not in `balance`.")
    buckets: list[BucketOut] = Field(description="The spendable buckets, oldest (spent first) first.")


class StatementLineOut(BaseModel):
    posting_id: int
    reference: str
    kind: PostedKind = Field(description=POSTED_KINDS)
    amount: int
    memo: str | None
    created_at: datetime


class MonthOut(BaseModel):
    month: str
    credited: int
    debited: int


class StatementOut(BaseModel):
    lines: list[StatementLineOut] = Field(description="Recent detail, newest first.")
    next_before: int | None = Field(description="Pass as `before` for the next page.")
    history: list[MonthOut] = Field(description="Older months, rolled up after the retention window.")


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"program_id": 1, "name": "Coffee voucher", "cost": 300, "stock": 500},
        {"program_id": 1, "name": "¥20 off coupon", "cost": 2000, "stock": 1000, "kind": "coupon",
         "coupon_template_id": 3}]})

    program_id: StrictId
    name: str = Field(min_length=1, max_length=200)
    cost: StrictInt = Field(gt=0, le=10**12, description="Points per unit.")
    stock: StrictInt = Field(ge=0, le=10**9)
    kind: Literal["item", "coupon"] = Field(
        "item", description="item: the stock is the reward; coupon: each unit redeemed issues a coupon of "
                            "`coupon_template_id` to the contact.")
    coupon_template_id: StrictId | None = Field(None, description="coupon: the active coupon template issued.")


class RewardOut(BaseModel):
    id: int
    program_id: int
    name: str
    cost: int
    stock: int
    kind: Literal["item", "coupon"]
    coupon_template_id: int | None


class RewardPage(BaseModel):
    items: list[RewardOut]
    next_after: int | None = Field(None, description="Pass as `after` to get the next page; null at the end.")


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"order_id": "order-991", "contact_id": 42, "reward_id": 7, "quantity": 1}]})

    order_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
                          description="Your order id; retrying with the same id returns the same order.")
    contact_id: StrictId
    reward_id: StrictId
    quantity: StrictInt = Field(1, ge=1, le=1000)
    device: str | None = Field(None, max_length=200, description="Risk controls: the device the order came from.")
    ip: str | None = Field(None, max_length=64, description="Risk controls: the client's IP address.")


class RedemptionOut(BaseModel):
    order_id: str
    program_id: int
    contact_id: int
    reward_id: int
    quantity: int
    points: int
    status: Literal["pending", "completed", "failed", "cancelled"]
    failure: str | None
    coupon_codes: list[str] = Field(
        description="A coupon reward: the codes issued, one per unit (revoked again if the order failed); "
                    "empty otherwise or until issued.")
    workflow_id: str
    created_at: datetime
    updated_at: datetime


class RedemptionPage(BaseModel):
    items: list[RedemptionOut] = Field(description="Newest first.")
    next_before: str | None = Field(None, description="Pass as `before` for older orders; null at the end.")


class ExpiryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"program_ids": [1]}]})

    program_ids: list[StrictId] | None = Field(None, max_length=100, description="Only these programs (default all).")


class ExpiryRunOut(BaseModel):
    workflow_id: str
    status: str = Field(description="RUNNING, COMPLETED, FAILED, …, as Temporal reports it.")
    totals: dict[str, int] | None = Field(None, description="When completed: programs and contacts swept, expiry "
                                                            "postings made, points expired, postings refused.")


class ReconciliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"program_ids": [1]}]})

    program_ids: list[StrictId] | None = Field(None, max_length=100, description="Only these programs (default all).")


class ReconciliationOut(BaseModel):
    workflow_id: str
    status: str = Field(description="RUNNING, COMPLETED, FAILED, …, as Temporal reports it.")
    totals: dict[str, int] | None = Field(None, description="When completed: accounts and postings checked, "
                                                            "holds voided, findings found and fixed.")


class FindingOut(BaseModel):
    id: int
    program_id: int
    contact_id: int = Field(description="0 for findings about a whole program.")
    finding_class: str = Field(description="balance_drift, bucket_drift, journal_drift, account_drift, "
                                           "unbalanced_posting, entry_mismatch, program_unbalanced, hold_timed_out, "
                                           "grant_without_posting, posting_without_grant.")
    subject: str
    detail: dict[str, object]
    status: Literal["open", "fixed", "resolved"] = Field(
        description="fixed: corrected automatically (see fix, fixed_by); open: waiting for review.")
    fix: str | None
    fixed_by: str | None = Field(description="Reference of the posting that fixed or journaled the fix.")
    note: str | None
    created_at: datetime
    resolved_at: datetime | None


class FindingPage(BaseModel):
    findings: list[FindingOut]
    next_before: int | None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"note": "Entries of posting 812 restored from the Parquet archive; balance checked."}]})

    note: str = Field(min_length=1, max_length=2000, description="What was found and done.")


class RiskRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"program_id": 1, "action": "credit", "dimension": "device", "window_seconds": 86400, "max_count": 20,
         "verdict": "review"},
        {"program_id": 1, "action": "redeem", "dimension": "ip", "window_seconds": 3600, "max_amount": 5000,
         "verdict": "refuse"}]})

    program_id: StrictId
    action: Literal["credit", "redeem"]
    dimension: Literal["contact", "device", "ip"]
    window_seconds: StrictInt = Field(ge=1, le=90 * 86400)
    max_count: StrictInt | None = Field(None, ge=1, le=INT_MAX)
    max_amount: StrictInt | None = Field(None, ge=1, le=ID_MAX)
    verdict: Literal["refuse", "review"] = Field(description="review holds credits until released (credits only).")


class RiskRuleOut(BaseModel):
    id: int
    action: str
    dimension: str
    window_seconds: int
    max_count: int | None
    max_amount: int | None
    verdict: str


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"dimension": "device", "value": "emulator-5554", "reason": "farm device"}]})

    dimension: Literal["contact", "device", "ip"]
    value: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(None, max_length=500)


class ReviewOut(BaseModel):
    id: int
    program_id: int
    contact_id: int
    reference: str
    amount: int
    reason: str
    status: Literal["pending", "released", "rejected"]
    note: str | None
    created_at: datetime
    decided_at: datetime | None
    posting: PostingOut | None = Field(None, description="The credit, once released.")
