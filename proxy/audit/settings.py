"""The `audit:` section: where the trail goes, which secret keys it, and what happens on failure.

Auditing is on by default, written next to the config file: a security product that must be
told to keep evidence will one day be deployed without it. The chain key is a secret of its own,
never derived from the KEK, so someone who holds the audit key can verify (or forge) the trail
but cannot decrypt one PHI value, and whoever holds the KEK cannot rewrite the trail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from keys.config_file import ConfigPath
from proxy.postgres_url import (
    check_postgres_url,
    check_schema_name,
    describe_postgres_url,
)

__all__ = ["AlertSettings", "AuditSettings"]


class AlertSettings(BaseModel):
    """Thresholds of the alert lines (logger `phi_proxy.alert`) a SIEM pages on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    masked_burst_threshold: int = Field(
        default=50,
        ge=1,
        description="Alert when one subject receives this many responses with masked fields "
        "within masked_burst_window_seconds (someone probing records they may not see).",
    )
    masked_burst_window_seconds: float = Field(
        default=60.0, gt=0, le=86400, description="Sliding window of the masked-burst counter."
    )
    repeat_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="lapsed_grant_use and integrity_failure: at most one line per subject "
        "and alert in this many seconds; the next line says how many were held back "
        "(`suppressed`). The audit trail keeps every event regardless.",
    )


class AuditSettings(BaseModel):
    """Audit trail: sink, chain key, checkpoints, batching and the failure policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Write the audit trail. Turning it off removes the evidence a breach "
        "investigation needs; only for throw-away test setups.",
    )
    sink: Literal["file", "stdout", "postgres"] = Field(
        default="file",
        description="`file`: JSON lines at `path`, shared by every proxy worker and CLI on "
        "this host. `stdout`: JSON lines on standard output for a log shipper. `postgres`: "
        "one chain in the PostgreSQL database `dsn`, shared by every replica of a fleet.",
    )
    dsn: str | None = Field(
        default=None,
        description="sink postgres only: the database, postgresql://USER@HOST:5432/DBNAME "
        "(may be the grant store's). Never put a password in the URL: use PGPASSWORD or "
        "~/.pgpass. TLS options go in the query (?sslmode=verify-full).",
    )
    pg_schema: str = Field(
        default="phi_audit",
        description="sink postgres only: the schema holding the audit tables; created and "
        "migrated on first use. Lower-case letters, digits and '_'.",
    )
    pg_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="sink postgres only: the longest one batched write, probe or read may "
        "take, connecting included; longer counts as a failed write (see on_failure).",
    )
    path: ConfigPath = Field(
        default=Path("audit.jsonl"),
        validate_default=True,
        description="The JSON-lines audit file (relative to the config file). Rotate it by "
        "renaming; the next event starts a new file that continues the chain.",
    )
    key_file: ConfigPath = Field(
        default=Path("audit.key"),
        validate_default=True,
        description="File holding the secret HMAC key of the chain (base64 of 32 random bytes, "
        "mode 0600). Created on first use when neither it nor the audit file exists yet; "
        "never with sink postgres, where every replica and auditor needs the same key.",
    )
    key_env: str | None = Field(
        default=None,
        description="Name of an environment variable holding the chain key (base64); when set "
        "it is used instead of key_file.",
    )
    signing_key_file: ConfigPath | None = Field(
        default=None,
        description="Optional Ed25519 private key (PEM, PKCS#8) signing checkpoints, so an "
        "auditor can check them with the public key alone (phi-audit verify --public-key).",
    )
    checkpoint_every: int = Field(
        default=1000, ge=1, description="Write a checkpoint event after every N events."
    )
    pruned_before: int | None = Field(
        default=None,
        ge=2,
        description="Set when the oldest rotated audit files were deleted on purpose "
        "(retention): the first seq the remaining files hold. phi-audit verify/report and "
        "phi-grants review then accept a trail starting there; without it a trail that does not "
        "start at seq 1 is reported as broken (its oldest files are missing).",
    )
    checkpoint_seconds: float = Field(
        default=300.0, gt=0, description="…and at least this often while events are written."
    )
    flush_interval: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Milliseconds between batched writes; a crash loses at most this much.",
    )
    fsync: bool = Field(
        default=True, description="fsync each batch, so a power cut loses no written batch."
    )
    on_failure: Literal["deny", "allow"] = Field(
        default="deny",
        description="`deny`: while the trail cannot be written, decrypt nothing (mask every "
        "field) until a write succeeds again. `allow`: keep decrypting and log errors.",
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings, description="Thresholds of alert log lines."
    )

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, value: str | None) -> str | None:
        return None if value is None else check_postgres_url(value, setting="audit.dsn")

    @field_validator("pg_schema")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        return check_schema_name(value, setting="audit.pg_schema")

    @model_validator(mode="after")
    def _dsn_goes_with_postgres(self) -> Self:
        if self.sink == "postgres" and self.dsn is None:
            raise ValueError(
                "audit.sink is postgres but audit.dsn is not set; add "
                "dsn: postgresql://USER@HOST:5432/DBNAME to the audit section"
            )
        if self.sink != "postgres" and self.dsn is not None:
            raise ValueError(
                f"audit.dsn is set but audit.sink is {self.sink}, so the trail would not go to "
                "that database; set sink: postgres, or remove dsn"
            )
        return self

    def __repr_args__(self) -> list[tuple[str | None, object]]:
        """Show the database URL without its user name and query options."""
        return [
            (name, describe_postgres_url(value) if name == "dsn" and value else value)
            for name, value in super().__repr_args__()
        ]
