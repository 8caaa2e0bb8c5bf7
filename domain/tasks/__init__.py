"""Incentive tasks: rules, periods and progress, as pure rules."""
