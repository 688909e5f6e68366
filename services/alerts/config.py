"""Settings of the alert consumer that rtfd.config.Settings does not hold (the webhook, progress logging).

Read from RTFD_* environment variables (and .env) like every other rtfd setting; Kafka, the registry and
PostgreSQL still come from rtfd.config.Settings.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTFD_", env_file=".env", extra="ignore")

    alert_webhook_url: SecretStr | None = None
    """POST every new alert as JSON here; unset = no webhook. Secret: such URLs often carry a token."""
    alert_webhook_timeout: float = Field(5.0, gt=0)
    """Seconds per HTTP request."""
    alert_webhook_max_attempts: int = Field(8, ge=1)
    """Attempts per alert before the notification is given up (it stays visible in `webhook_status`)."""
    alert_webhook_backoff: float = Field(1.0, gt=0)
    """Delay before the first retry; doubles per attempt up to alert_webhook_max_backoff."""
    alert_webhook_max_backoff: float = Field(300.0, gt=0)
    alert_webhook_queue_size: int = Field(1000, ge=1)
    """In-memory queue of first attempts; when full, the notification waits in the table for the next sweep."""
    alert_progress_interval: float = Field(10.0, gt=0)
    """Seconds between the consumer's one-line progress logs."""

    @property
    def webhook_url(self) -> str | None:
        return self.alert_webhook_url.get_secret_value() if self.alert_webhook_url else None
