"""Events: the one-statement batch insert, the outbox, a contact's timeline, pruning; merge and erasure steps."""
