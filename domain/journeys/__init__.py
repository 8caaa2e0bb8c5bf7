"""Journeys: the versioned graph, its validation and how a contact moves through it, as pure rules."""
