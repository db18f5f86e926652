"""Console settings; ``pipeline.config.Settings`` composes them as ``console:``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    #: signs the session cookies; ``None``: a random key kept in ``<home>/state/console.key`` (0600)
    secret_key: SecretStr | None = None
    #: a session ends this long after login
    session_hours: float = Field(8.0, gt=0)
    #: wrong passwords in a row before the account locks, and for how long
    max_failed_logins: int = Field(5, ge=1)
    lockout_minutes: float = Field(15.0, gt=0)
    #: login attempts per client address per minute (beyond: 429)
    login_attempts_per_minute: int = Field(10, ge=1)
    #: an appeal is due this long after it is filed
    appeal_due_hours: float = Field(24.0, gt=0)
    #: "near due" in the queue: due within this many hours
    appeal_near_due_hours: float = Field(4.0, gt=0)
    #: an overturn's clearance keeps the model from blocking the number again for this long
    clearance_hours: float = Field(72.0, gt=0)
    #: rows per page in every list
    page_size: int = Field(25, ge=1, le=500)
    #: send the session cookie only over HTTPS (set behind a TLS proxy)
    secure_cookies: bool = False
