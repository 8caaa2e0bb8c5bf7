"""Promotions: the discount model and the pricing engine, as pure rules."""
