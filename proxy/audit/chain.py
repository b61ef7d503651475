"""The keyed hash chain: how an event becomes one tamper-evident line, and how lines link.

Every line is the canonical JSON (orjson, sorted keys) of one event plus four chain fields:

* `v`    — the line format: 2 (grouped `records`); 1-lines in older trails are still read;
* `seq`  — 1, 2, 3, … across every file of the trail (a gap means deleted lines);
* `prev` — SHA-256 of the previous line's bytes (an edit or a reorder breaks the link);
* `mac`  — HMAC-SHA256 with the audit key over the line without `mac`.

Linking by a plain hash of the previous *line* (rather than by its MAC) lets an auditor who holds
only the checkpoint public key check the links and the signed checkpoints without the secret;
the MAC stops someone who can edit the file from recomputing the chain. A checkpoint line also
carries `sig`, an Ed25519 signature over the line without `mac` and `sig`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from proxy.audit.secrets import ChainKey

__all__ = [
    "FORMAT_VERSION",
    "GENESIS_PREV",
    "READABLE_VERSIONS",
    "Chain",
    "Head",
    "canonical",
    "line_hash",
    "mac_of",
    "signature_ok",
]

#: The format of every line written now (see proxy/audit/records.py for what changed in 2).
FORMAT_VERSION: Final = 2
#: Every format `phi-audit` reads: a trail written before an upgrade stays readable forever.
READABLE_VERSIONS: Final = (1, 2)
#: `prev` of the very first event of a trail.
GENESIS_PREV: Final = "0" * 64


def canonical(obj: dict[str, Any]) -> bytes:
    """The one byte form of an event: compact JSON with sorted keys."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def line_hash(line: bytes) -> str:
    """What the next event's `prev` must be: hex SHA-256 of this line (no newline)."""
    return hashlib.sha256(line).hexdigest()


def mac_of(key: ChainKey, body: dict[str, Any]) -> str:
    """The HMAC of an event body (everything but `mac`)."""
    return hmac.new(key.reveal_for_hmac(), canonical(body), hashlib.sha256).hexdigest()


def _signed_part(body: dict[str, Any]) -> bytes:
    return canonical({k: v for k, v in body.items() if k not in {"mac", "sig"}})


def signature_ok(public_key: Ed25519PublicKey, event: dict[str, Any]) -> bool:
    """True when a checkpoint's `sig` is a valid signature by `public_key`."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - verify path only

    sig = event.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        public_key.verify(base64.b64decode(sig, validate=True), _signed_part(event))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Head:
    """The end of the chain: the last sequence number and the hash of the last line."""

    seq: int
    hash: str

    @classmethod
    def empty(cls) -> Head:
        """The head of a trail with no events yet."""
        return cls(0, GENESIS_PREV)


class Chain:
    """Seals event payloads into lines, given the current head; holds the keys."""

    __slots__ = ("_key", "_signer", "_version", "checkpoint_every")

    def __init__(
        self,
        key: ChainKey,
        *,
        signer: Ed25519PrivateKey | None = None,
        checkpoint_every: int,
        format_version: int = FORMAT_VERSION,
    ) -> None:
        """Seal with `key`; sign checkpoints with `signer` when given.

        `format_version` other than the current one is for tests only: they write the lines an
        older proxy wrote, to prove those still verify and report.
        """
        self._key = key
        self._signer = signer
        self._version = format_version
        self.checkpoint_every = checkpoint_every

    def __repr__(self) -> str:
        return f"Chain(signed={self._signer is not None})"

    def seal(self, payload: dict[str, Any], head: Head) -> tuple[bytes, Head]:
        """One line for `payload` after `head`, and the new head."""
        body = {**payload, "v": self._version, "seq": head.seq + 1, "prev": head.hash}
        if payload.get("type") == "checkpoint" and self._signer is not None:
            body["sig"] = base64.b64encode(self._signer.sign(_signed_part(body))).decode()
        body["mac"] = mac_of(self._key, body)
        line = canonical(body)
        return line, Head(head.seq + 1, line_hash(line))

    def seal_all(
        self, payloads: list[dict[str, Any]], head: Head, *, ts: str, force_checkpoint: bool
    ) -> tuple[list[bytes], Head, bool]:
        """Seal a batch, adding a checkpoint every `checkpoint_every` events (or if forced).

        Returns the lines, the new head, and whether a checkpoint was written.
        """
        lines: list[bytes] = []
        checkpointed = False
        for payload in payloads:
            line, head = self.seal(payload, head)
            lines.append(line)
            if head.seq % self.checkpoint_every == 0:
                line, head = self.seal(self.checkpoint(head, ts), head)
                lines.append(line)
                checkpointed = True
        if force_checkpoint and not checkpointed and lines:
            line, head = self.seal(self.checkpoint(head, ts), head)
            lines.append(line)
            checkpointed = True
        return lines, head, checkpointed

    def checkpoint(self, head: Head, ts: str) -> dict[str, Any]:
        """The payload of a checkpoint after `head` (its `prev` is the running head)."""
        return {"type": "checkpoint", "ts": ts, "covers_seq": head.seq, "signed": self.signed}

    @property
    def signed(self) -> bool:
        """True when checkpoints carry an Ed25519 signature."""
        return self._signer is not None
