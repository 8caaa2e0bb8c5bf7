"""docker-compose.yml stays valid and wires every service the settings need."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_backing_service_is_present() -> None:
    services = _compose()["services"]
    for name in ("postgres", "temporal", "temporal-ui", "elasticsearch", "mailpit", "migrate", "api", "worker"):
        assert name in services, f"docker-compose.yml lacks the {name} service"
        assert services[name].get("image") or services[name].get("build"), name


def test_nudge_processes_are_wired_by_environment_to_the_services() -> None:
    services = _compose()["services"]
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        settings = Settings(**{k: v for k, v in env.items() if not k.startswith("NUDGE_")})  # aliases parse
        assert settings.database_url and "@postgres:" in settings.database_url
        assert settings.temporal_address == "temporal:7233"
        assert settings.smtp_url and "mailpit" in settings.smtp_url
        assert settings.elasticsearch_url == "http://elasticsearch:9200"
    assert services["api"]["command"] == ["nudge", "api"]
    assert services["worker"]["command"] == ["nudge", "worker"]
    assert services["migrate"]["command"] == ["nudge", "migrate"]


def test_dependencies_point_at_defined_services() -> None:
    services = _compose()["services"]
    for name, spec in services.items():
        deps = spec.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on undefined service {dep}"


def test_temporal_gets_nudge_search_attributes() -> None:
    command = " ".join(_compose()["services"]["temporal-admin"]["command"])
    for attribute in ("CampaignId", "JourneyId", "TaskId", "NudgeKind"):
        assert attribute in command
