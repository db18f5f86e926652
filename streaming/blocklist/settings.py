"""Blocklist settings: operators, analysts, channels and the HTTP service.

``pipeline.config.Settings`` composes them as ``blocklist:`` and ``service:`` (with ``policy:``
from :mod:`streaming.blocklist.decision`), so nothing here imports ``pipeline/``.

Every operator receives every entry (a SIM-wide block: the home operator bars outgoing calls,
the others bar incoming calls from the number; a trunk-scoped spoofing rule: each operator
rejects the CLI on its own gateways), so an operator's section only says how to reach it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from features.resources import config_file

#: ``features.numbering.DEFAULT_PLAN_PATH``; read here as plain YAML because importing
#: ``features.numbering`` pulls in pandas, and ``pipeline.config`` imports this module on every
#: CLI start
_PLAN_PATH = config_file("numbering_plan.yaml")


@cache
def _plan_operators() -> tuple[str, ...]:
    raw = yaml.safe_load(_PLAN_PATH.read_text(encoding="utf-8")) or {}
    return tuple(raw.get("operators") or ())


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperatorSettings(_Section):
    #: entries are POSTed here one at a time (``Idempotency-Key: <version>``); ``None``: no webhook
    webhook_url: AnyHttpUrl | None = None
    #: sent as ``Authorization: Bearer`` to the webhook
    webhook_token: SecretStr | None = None
    #: the operator's own token for ``GET /blocklist``; ``None``: it cannot use the HTTP API
    api_token: SecretStr | None = None


class WebhookSettings(_Section):
    timeout_s: float = Field(5.0, gt=0)
    #: delay before retry n is ``min(backoff_max_s, backoff_base_s * 2**n)``, half of it jittered
    backoff_base_s: float = Field(2.0, gt=0)
    backoff_max_s: float = Field(600.0, gt=0)
    #: then the delivery is ``failed`` (``simguard blocklist redeliver`` puts it back); with the
    #: defaults the attempts span about a day, the industry's ask for resolving a wrong block
    max_attempts: int = Field(200, ge=1)
    #: deliveries attempted per ``deliver_pending`` call, over all operators
    batch_size: int = Field(500, ge=1)
    #: one deliverer per operator at a time (the streaming job and ``simguard serve`` both run one);
    #: renewed before each POST, so it must outlast one POST (connect, write and read timeouts)
    lease_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _lease_covers_a_post(self) -> WebhookSettings:
        if self.lease_s <= 3 * self.timeout_s:
            raise ValueError("webhook.lease_s must be more than 3 x timeout_s: a lease must outlast one POST")
        return self


class BlocklistKafkaSettings(_Section):
    """The per-operator compacted topics ``{kafka.topics.blocklist_prefix}.{operator}``."""

    #: one partition keeps each operator's topic in version order end to end
    partitions: int = Field(1, ge=1)
    replication_factor: int = Field(1, ge=1)
    #: entries read from the store per round trip
    batch_size: int = Field(1000, ge=1)
    #: give up reaching the brokers after this long (the round is retried later); kafka-python's
    #: default of 30 s would hold up every micro-batch while Kafka is unreachable
    connect_timeout_s: float = Field(10.0, gt=0)


class BlocklistSettings(_Section):
    #: keys are operators of ``configs/numbering_plan.yaml``; every operator of the plan receives
    #: every entry, and one missing here simply has no webhook and no API token
    operators: dict[str, OperatorSettings] = Field(default_factory=dict)
    #: analyst name -> token for ``POST /unblock``
    analysts: dict[str, SecretStr] = Field(default_factory=dict)
    webhook: WebhookSettings = WebhookSettings()
    kafka: BlocklistKafkaSettings = BlocklistKafkaSettings()
    #: CSV or Parquet with an ``a_number`` (or ``number``) column, loaded into the allowlist on start
    registered_businesses: Path | None = None

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, value: dict[str, OperatorSettings]) -> dict[str, OperatorSettings]:
        if not value:
            return value
        known = _plan_operators()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown operator(s) {unknown}; the numbering plan has {', '.join(known)}")
        return value

    def for_operators(self, operators: Iterable[str]) -> dict[str, OperatorSettings]:
        """Settings for each of ``operators`` (the numbering plan's), defaults where not configured."""
        return {op: self.operators.get(op, OperatorSettings()) for op in operators}

    @model_validator(mode="after")
    def _distinct_tokens(self) -> BlocklistSettings:
        # a token must name exactly one caller, or one operator could read as another
        tokens = [o.api_token.get_secret_value() for o in self.operators.values() if o.api_token]
        tokens += [t.get_secret_value() for t in self.analysts.values()]
        if any(not t for t in tokens):
            raise ValueError("an API token is empty")
        if len(tokens) != len(set(tokens)):
            raise ValueError("two callers (operators or analysts) share an API token")
        return self


class ServiceSettings(_Section):
    """``simguard serve``: the HTTP API and its background distribution loop."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    #: every interval the loop expires lapsed blocks, publishes to Kafka and delivers webhooks
    loop_interval_s: float = Field(5.0, gt=0)
    #: publish to the Kafka topics from the loop (off where only the streaming job publishes)
    publish_kafka: bool = True
    #: most entries one ``GET /blocklist`` returns
    max_page: int = Field(10000, ge=1)
    #: larger request bodies get 413 (an unblock request is well under 4 KiB)
    max_body_bytes: int = Field(65536, ge=1024)
    #: PEM certificate (chain) and private key handed to uvicorn; required to bind anything but
    #: loopback (``host: 0.0.0.0``), so tokens never cross a network in clear
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both service.tls_certfile and service.tls_keyfile, or neither")
        return self


class AuditSettings(_Section):
    """The regulator's audit: log retention and the key that pseudonymises numbers in reports."""

    #: audit records older than this are deleted by ``simguard audit expire`` (itself logged);
    #: the EU AI Act asks for at least six months
    retention_days: int = Field(default=400, ge=183)
    #: HMAC-SHA256 key for number pseudonyms; set it from the environment
    #: (``SIMGUARD_AUDIT__PSEUDONYM_KEY``), never in a shared file
    pseudonym_key: SecretStr | None = None
    #: printed in front of every pseudonym, so a rotated key gives visibly different names
    pseudonym_key_id: str = Field(default="k1", pattern=r"^[A-Za-z0-9_-]{1,16}$")
