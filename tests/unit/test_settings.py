from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shared.domain.errors import ConfigurationError
from shared.settings import UNSET_SECRET, load


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


GCP = {"MAILPIPE_BACKEND": "gcp", "MAILPIPE_GCP_PROJECT": "p", "MAILPIPE_TEMPLATE_BUCKET": "b"}


def test_a_secret_still_holding_terraforms_placeholder_names_the_secret_to_fill():
    """terraform/secrets.tf gives every secret a placeholder first version so an apply never
    waits for values; a function then fails at use, naming what to fill, never with the
    placeholder taken for a key."""
    env = {**GCP, "MAILPIPE_SIGNING_KEY": UNSET_SECRET, "MAILPIPE_HASH_KEY": "h" * 32}
    with pytest.raises(ConfigurationError, match="mailpipe-signing-key") as raised:
        load(env)
    assert "hash" not in str(raised.value)


def test_a_placeholder_api_key_counts_as_no_key_and_is_logged(caplog):
    keys = {"MAILPIPE_SIGNING_KEY": "s" * 32, "MAILPIPE_HASH_KEY": "h" * 32}
    unset = {"MAILPIPE_EVENTS_API_KEY": UNSET_SECRET, "MAILPIPE_SENDGRID_API_KEY": UNSET_SECRET}
    env = {**GCP, **keys, **unset}
    with caplog.at_level(logging.WARNING, logger="mailpipe.settings"):
        settings = load(env)
    assert settings.events_api_key == "" and settings.sendgrid_api_key == ""
    assert "mailpipe-events-api-key" in caplog.text and "mailpipe-sendgrid-api-key" in caplog.text


def test_trusted_proxy_hops_is_read_and_checked():
    assert load({}).trusted_proxy_hops == 1
    assert load({"MAILPIPE_TRUSTED_PROXY_HOPS": "2"}).trusted_proxy_hops == 2
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXY_HOPS"):
        load({"MAILPIPE_TRUSTED_PROXY_HOPS": "-1"})


def test_send_checkpoint_every_is_read_and_checked():
    assert load({}).send_checkpoint_every == 125
    assert load({"MAILPIPE_SEND_CHECKPOINT_EVERY": "50"}).send_checkpoint_every == 50
    with pytest.raises(ConfigurationError, match="SEND_CHECKPOINT_EVERY must be 1 or more"):
        load({"MAILPIPE_SEND_CHECKPOINT_EVERY": "0"})


def test_the_snapshot_piece_is_read_and_kept_within_half_the_dispatch_lease():
    assert load({}).audience_snapshot_piece_s == 120.0
    assert load({"MAILPIPE_AUDIENCE_SNAPSHOT_PIECE_S": "0"}).audience_snapshot_piece_s == 0.0
    for bad in ("-5", "151"):
        with pytest.raises(ConfigurationError, match="SNAPSHOT_PIECE_S must be 0 to 150"):
            load({"MAILPIPE_AUDIENCE_SNAPSHOT_PIECE_S": bad})
