"""The ground every layer may use: settings, metrics, logs. Imports nothing of the project."""
