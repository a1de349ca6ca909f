from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.errors import ConfigurationError
from shared.settings import load


def test_defaults_give_a_working_local_mode():
    settings = load({})
    assert settings.backend == "local" and settings.port == 8080 and settings.smtp_port == 1025
    # The checkout's var, wherever the command runs (not ./var of the working directory).
    assert settings.data_dir == Path(__file__).resolve().parents[2] / "var"
    assert settings.base_url == "http://127.0.0.1:8080"


def test_environment_overrides_and_types():
    env = {"PORT": "9000", "SMTP_PORT": "2525", "MAILPIPE_DATA_DIR": "/tmp/x"}
    settings = load({**env, "MAILPIPE_SES_TOPIC_ARNS": "a, b", "MAILPIPE_BUS_MAX_ATTEMPTS": "4"})
    assert (settings.port, settings.smtp_port, settings.data_dir) == (9000, 2525, Path("/tmp/x"))
    assert settings.ses_topic_arns == ("a", "b") and settings.bus_max_attempts == 4


def test_bad_values_are_named():
    with pytest.raises(ConfigurationError, match="PORT"):
        load({"PORT": "eighty"})
    with pytest.raises(ConfigurationError, match="MAILPIPE_BACKEND"):
        load({"MAILPIPE_BACKEND": "aws"})


def test_production_refuses_development_secrets():
    env = {"MAILPIPE_BACKEND": "gcp", "MAILPIPE_GCP_PROJECT": "p", "MAILPIPE_TEMPLATE_BUCKET": "b"}
    with pytest.raises(ConfigurationError, match="SIGNING_KEY"):
        load(env)
    ok = load({**env, "MAILPIPE_SIGNING_KEY": "s" * 32, "MAILPIPE_HASH_KEY": "h" * 32})
    assert ok.backend == "gcp"
