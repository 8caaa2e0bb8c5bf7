"""Points ledger rules: postings and monthly buckets, reconciliation and expiry maths, risk controls."""
