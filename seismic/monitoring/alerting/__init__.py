"""Alerts from drift reports: the rule engine (dedup, cooldown, resolve) and the delivery channels."""
