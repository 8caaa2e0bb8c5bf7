"""Channels: delivery states, caps, quiet hours, preferences and webhook signatures, as pure rules."""
