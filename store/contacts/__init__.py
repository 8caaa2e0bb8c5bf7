"""Contacts: profiles, identities and their resolution, CSV imports; their merge and erasure steps."""
