"""Points ledger: programs, postings (batched writer, credit fast path), accounts, holds, redemptions, expiry,
retention, reconciliation, risk; merge and erasure steps."""
