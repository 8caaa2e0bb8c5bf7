"""The delivery fixtures of tests/store/channels, for the API tests."""

from tests.store.channels.conftest import make_service  # noqa: F401 - a fixture, used by name
