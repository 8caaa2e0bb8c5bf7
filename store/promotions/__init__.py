"""Promotions in Postgres: promotions, coupons, inventory and orders."""
