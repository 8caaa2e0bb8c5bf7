"""Erasure: ledger accounts outlive their contact; an audit row per erasure; indexes erasure looks up by.

Revision ID: 0009_erasure
Revises: 0006_ledger_speed

The right to erasure deletes the contacts row, but the points ledger must keep its accounts, entries,
buckets and postings (keyed by the now-anonymous contact id) so the books still balance. The foreign key
from `ledger_accounts` to `contacts` forbade exactly that, so it goes: the posting paths already refuse
unknown contacts themselves (`ledger_post_credits` and the planned path join `contacts` before creating
an account), which was the key's only other job. See store/erasure.py for why this beat a tombstone row.

`contact_erasures` is the proof that an erasure happened (when, and how many rows of each kind went),
holding no personal data. The two partial/small indexes let erasure find a contact's pending redemption
orders and review-queue rows without scanning those tables; both index rare rows, so the write paths
barely notice them.
"""

from alembic import op

revision = "0009_erasure"
down_revision = "0006_ledger_speed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_contact_id_fkey;

        CREATE TABLE contact_erasures (
            contact_id bigint PRIMARY KEY,
            erased_at  timestamptz NOT NULL DEFAULT now(),
            removed    jsonb NOT NULL
        );

        CREATE INDEX ix_ledger_redemptions_pending_contact ON ledger_redemptions (contact_id) WHERE status = 'pending';
        CREATE INDEX ix_ledger_reviews_contact ON ledger_reviews (contact_id);
    """)


def downgrade() -> None:
    # Accounts of erased contacts would violate the restored key: they get empty placeholder contacts (no
    # personal data) rather than losing financial records.
    op.execute("""
        DROP INDEX ix_ledger_reviews_contact, ix_ledger_redemptions_pending_contact;
        DROP TABLE contact_erasures;
        INSERT INTO contacts (id) OVERRIDING SYSTEM VALUE
        SELECT DISTINCT a.contact_id FROM ledger_accounts a
        WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = a.contact_id);
        ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_contact_id_fkey
            FOREIGN KEY (contact_id) REFERENCES contacts (id);
    """)
