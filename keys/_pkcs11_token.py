"""One logged-in session per PKCS#11 token per process, re-opened after a token or session failure.

PKCS#11 wants its library initialized once per process and allows one login per application,
and an HSM may drop a session at any time (token pulled, HSM restarted, network HSM failover).
So every provider that names the same (module, token label) shares one `Pkcs11Token`, which:

- loads the module and logs in on first use (a read-only session: encrypting needs no more);
- runs each operation under its library's lock (a session is not safe for concurrent use,
  and a library restart must not cut into another token's operation);
- after a failed operation, asks the token a cheap question (find the key): if the token
  answers, the failure was the operation's own (e.g. data that does not decrypt) and is raised
  to the caller; if not, the session is dropped, the module re-initialized, and the operation
  tried once more after a fresh login;
- never retries a PIN the token refused: HSMs lock the user PIN after a few wrong tries, and a
  proxy that retried on every reload would lock it for everyone.

Every failure to open is a KekUnavailable whose message says what happened and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from typing import TYPE_CHECKING, Final, NamedTuple, TypeVar

from keys.errors import KekUnavailable

try:
    import pkcs11
except ImportError:  # the optional extra is not installed: `require_pkcs11` says so
    pkcs11 = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pkcs11._pkcs11 import lib as Pkcs11Lib  # noqa: N812 - the C extension's own name

__all__ = ["EXTRA_HINT", "KeyFacts", "Pin", "Pkcs11Token", "require_pkcs11", "token_for"]

_T = TypeVar("_T")

EXTRA_HINT: Final = "install it with `pip install 'phi-proxy[pkcs11]'`"


def require_pkcs11() -> None:
    """KekUnavailable naming the extra to install, unless python-pkcs11 is importable."""
    if pkcs11 is None:
        raise KekUnavailable(
            f"keys.kek.provider is pkcs11, but the python-pkcs11 package is missing; {EXTRA_HINT}"
        )


class Pin:
    """A token's user PIN, and where it came from; never printed."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str) -> None:
        self._value = value
        self.source = source  #: `env:NAME` or a file path, for messages

    def __repr__(self) -> str:
        return f"<Pin from {self.source} [secure]>"

    def reveal(self) -> str:
        """The PIN itself, for C_Login only."""
        return self._value


class KeyFacts(NamedTuple):
    """What the token says about the KEK object (nothing secret)."""

    object_id: bytes  #: CKA_ID (empty when the key has none)
    label: str


class _Module:
    """One loaded PKCS#11 library; `generation` counts its re-initializations.

    Its lock is shared by every token of the library: re-initializing it (C_Finalize) must not
    happen while another thread uses a session of the same library.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib: Pkcs11Lib | None = None
        self.generation = 0
        self.pid = 0
        self.lock = threading.Lock()


_MODULES: dict[str, _Module] = {}
_TOKENS: dict[tuple[str, str], Pkcs11Token] = {}
_REGISTRY_LOCK = threading.Lock()
#: Keyed digests of (module, token, PIN) a token refused in this process: never tried again.
_REFUSED_PINS: set[bytes] = set()
_PIN_SALT: Final = secrets.token_bytes(32)


def token_for(module: str, token_label: str) -> Pkcs11Token:
    """The process's one Pkcs11Token for this module file and token label."""
    require_pkcs11()
    path = os.path.realpath(module)
    with _REGISTRY_LOCK:
        found = _TOKENS.get((path, token_label))
        if found is None:
            loaded = _MODULES.setdefault(path, _Module(path))
            found = _TOKENS[path, token_label] = Pkcs11Token(loaded, token_label)
        return found


class Pkcs11Token:
    """The logged-in session with one token; see the module docstring."""

    def __init__(self, module: _Module, token_label: str) -> None:
        self._module = module
        self._label = token_label
        self._lock = module.lock
        self._session: pkcs11.Session | None = None
        self._session_pin = b""  # keyed digest of the PIN the session logged in with
        self._generation = -1
        self._keys: dict[str, tuple[pkcs11.SecretKey, KeyFacts]] = {}

    def __repr__(self) -> str:
        return f"<Pkcs11Token {self._label!r} via {self._module.path}>"

    @property
    def where(self) -> str:
        """`token 'LABEL' (MODULE)`, for messages."""
        return f"token {self._label!r} ({self._module.path})"

    def facts(self, pin: Pin, key_label: str) -> KeyFacts:
        """Open the token if needed and return the named key's facts (KekUnavailable if not)."""
        with self._lock:
            return self._key(pin, key_label)[1]

    def call(self, pin: Pin, key_label: str, op: Callable[[pkcs11.SecretKey], _T]) -> _T:
        """`op(key)` on a live session, re-opened once if the token stopped answering.

        A PKCS11Error that `op` raises while the token still answers is raised as it is: the
        caller decides what a refused operation means. A token that stops answering, and
        still does not after a fresh login, is a KekUnavailable.
        """
        failure = ""
        with self._lock:
            for attempt in (1, 2):
                key = self._key(pin, key_label)[0]
                try:
                    return op(key)
                except pkcs11.PKCS11Error as exc:
                    if self._answers(key_label):
                        raise
                    failure = type(exc).__name__
                self._drop(reinitialize=True)
                if attempt == 2:  # noqa: PLR2004
                    break
        raise KekUnavailable(
            f"{self.where} stopped answering ({failure}), also after logging in again; check "
            "that the HSM or token is connected and working"
        )

    def generate_key(self, pin: Pin, key_label: str, object_id: bytes) -> KeyFacts:
        """Create a non-extractable, sensitive AES-256 key on the token; refuse a taken label."""
        attribute = pkcs11.Attribute
        template = {
            attribute.TOKEN: True,  # kept on the token, not only for this session
            attribute.PRIVATE: True,  # visible only after login
            attribute.SENSITIVE: True,  # its value is never revealed...
            attribute.EXTRACTABLE: False,  # ...nor wrapped out under any other key
            attribute.MODIFIABLE: False,
            attribute.ENCRYPT: True,
            attribute.DECRYPT: True,
            attribute.WRAP: False,
            attribute.UNWRAP: False,
            attribute.SIGN: False,
            attribute.VERIFY: False,
            attribute.DERIVE: False,
        }
        with self._lock:
            if self._live_find(pin, key_label):
                raise KekUnavailable(
                    f"{self.where} already holds a key labelled {key_label!r}; refusing to make "
                    "a second one (which would open the keystore?). Choose another "
                    "keys.kek.key_label, or use the existing key: run init without --kek-provider"
                )
            try:
                with self._rw_session() as writer:
                    writer.generate_key(
                        pkcs11.KeyType.AES,
                        256,
                        label=key_label,
                        id=object_id,
                        store=True,
                        template=template,
                    )
            except pkcs11.PKCS11Error as exc:
                raise KekUnavailable(
                    f"{self.where}: cannot create key {key_label!r} ({type(exc).__name__}); "
                    "check that the token is writable and has room"
                ) from None
            return self._key(pin, key_label)[1]

    # ---- internals (called with self._lock held) --------------------------------------------

    def _forget_stale(self, pin: Pin) -> None:
        """Drop a session from before a library restart (or a fork), or with another PIN."""
        if self._generation != self._module.generation or self._module.pid != os.getpid():
            self._drop(reinitialize=False)
        elif self._session is not None and self._session_pin != _pin_digest(
            self._module.path, self._label, pin
        ):
            self._drop(reinitialize=False)  # another PIN is configured now: log in with it

    def _live_find(self, pin: Pin, key_label: str) -> list[pkcs11.SecretKey]:
        """Find the key on a session that answers, logging in again first if it does not."""
        self._forget_stale(pin)
        if self._session is not None and not _alive(self._session):
            self._drop(reinitialize=True)
        return self._find(self._open(pin), key_label)

    def _key(self, pin: Pin, key_label: str) -> tuple[pkcs11.SecretKey, KeyFacts]:
        self._forget_stale(pin)
        cached = self._keys.get(key_label)
        if cached is not None:
            return cached
        try:
            found = self._live_find(pin, key_label)
        except KekUnavailable:
            self._drop(reinitialize=True)  # the next try starts from a fresh library
            raise
        if not found:
            raise KekUnavailable(
                f"{self.where} has no AES key labelled {key_label!r}; check keys.kek.key_label, "
                "or create the key with `phi-keys init --kek-provider pkcs11`"
            )
        if len(found) > 1:
            raise KekUnavailable(
                f"{self.where} holds {len(found)} keys labelled {key_label!r}; a KEK's label "
                "must be unique: relabel or remove the extra ones with the HSM's own tools"
            )
        known = KeyFacts(_check_key(found[0], key_label, self.where), key_label)
        self._keys[key_label] = (found[0], known)
        return found[0], known

    def _find(self, session: pkcs11.Session, key_label: str) -> list[pkcs11.SecretKey]:
        query = {
            pkcs11.Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY,
            pkcs11.Attribute.LABEL: key_label,
        }
        try:
            return [o for o in session.get_objects(query) if isinstance(o, pkcs11.SecretKey)]
        except pkcs11.PKCS11Error as exc:
            raise KekUnavailable(
                f"{self.where} stopped answering ({type(exc).__name__}); check that the HSM "
                "or token is connected"
            ) from None

    def _answers(self, key_label: str) -> bool:
        """True if this session is alive and still finds the key (so a failure was the op's)."""
        if self._session is None or not _alive(self._session):
            return False
        try:
            return bool(self._find(self._session, key_label))
        except KekUnavailable:
            return False

    def _open(self, pin: Pin) -> pkcs11.Session:
        if self._session is not None:
            return self._session
        lib = self._load()
        refused = _pin_digest(self._module.path, self._label, pin)
        if refused in _REFUSED_PINS:
            raise KekUnavailable(
                f"{self.where} refused the PIN from {pin.source} earlier in this process; "
                "it is not tried again (a token locks its PIN after a few wrong tries): set "
                "the right PIN, then restart"
            )
        token = self._token(lib)
        try:
            session = token.open(user_pin=pin.reveal())
        except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
            _REFUSED_PINS.add(refused)
            raise KekUnavailable(
                f"{self.where} refused the PIN from {pin.source}; set the right PIN there. "
                "It is not tried again until then: a token locks its PIN after a few wrong tries"
            ) from None
        except (pkcs11.PinLocked, pkcs11.PinExpired):
            raise KekUnavailable(
                f"{self.where}: the user PIN is locked or expired; the token's security "
                f"officer must reset it, then put the new PIN in {pin.source}"
            ) from None
        except pkcs11.PKCS11Error as exc:
            raise KekUnavailable(
                f"{self.where}: cannot log in ({type(exc).__name__}); check that the token "
                "is present and initialized"
            ) from None
        self._session, self._session_pin = session, refused
        self._generation = self._module.generation
        return session

    def _token(self, lib: Pkcs11Lib) -> pkcs11.Token:
        path = self._module.path
        try:
            try:
                return lib.get_token(token_label=self._label)
            except pkcs11.NoSuchToken:
                # The library lists the slots it saw at C_Initialize: a token inserted (or
                # an HSM reconnected) since is found only after a restart of the library.
                self._drop(reinitialize=True)
                return lib.get_token(token_label=self._label)
        except pkcs11.NoSuchToken:
            raise KekUnavailable(
                f"no token labelled {self._label!r} in {path} (tokens present: {_labels(lib)}); "
                "check keys.kek.token_label, and that the HSM or token is connected"
            ) from None
        except pkcs11.MultipleTokensReturned:
            raise KekUnavailable(
                f"several tokens are labelled {self._label!r} in {path}; give each a unique label"
            ) from None
        except pkcs11.PKCS11Error as exc:
            raise KekUnavailable(
                f"{path}: cannot list its tokens ({type(exc).__name__}); check the HSM's "
                "connection and its client configuration"
            ) from None

    def _load(self) -> Pkcs11Lib:
        module = self._module
        if module.lib is not None and module.pid == os.getpid():
            return module.lib
        _check_module_file(module.path)
        try:
            lib = pkcs11.lib(module.path)
            if module.lib is not None:  # a forked child: the parent's initialization is void
                lib.reinitialize()
                module.generation += 1
        except pkcs11.PKCS11Error as exc:
            raise KekUnavailable(
                f"keys.kek.module {module.path}: cannot load the PKCS#11 library ({exc}); "
                "install the HSM's PKCS#11 library (SoftHSM2: `apt-get install softhsm2`) "
                "or correct the path"
            ) from None
        module.lib, module.pid = lib, os.getpid()
        return lib

    def _drop(self, *, reinitialize: bool) -> None:
        """Forget the session and keys; with `reinitialize`, restart the library (a rescan)."""
        session, self._session = self._session, None
        self._keys.clear()
        module = self._module
        if session is not None and self._generation == module.generation:
            with contextlib.suppress(pkcs11.PKCS11Error):
                session.close()
        if reinitialize and module.lib is not None and module.pid == os.getpid():
            with contextlib.suppress(pkcs11.PKCS11Error):
                module.lib.reinitialize()
            module.generation += 1

    @contextlib.contextmanager
    def _rw_session(self) -> Iterator[pkcs11.Session]:
        """A read-write session for one write; the login is the token's, shared with ours."""
        if self._session is None:  # pragma: no cover - _open ran first
            raise AssertionError
        writer = self._session.token.open(rw=True)
        try:
            yield writer
        finally:
            with contextlib.suppress(pkcs11.PKCS11Error):
                writer.close()


def _alive(session: pkcs11.Session) -> bool:
    """Whether the session still answers: C_GenerateRandom, the cheapest call that needs one.

    (Not an object search: python-pkcs11 raises from a finalizer when one starts on a dead
    session.)
    """
    try:
        session.generate_random(64)
    except pkcs11.PKCS11Error:
        return False
    return True


def _check_module_file(path: str) -> None:
    """Refuse a library others could replace: its code runs inside the proxy, next to the DEKs."""
    try:
        info = os.stat(path)  # noqa: PTH116 - the resolved path, as dlopen will read it
    except OSError as exc:
        raise KekUnavailable(
            f"keys.kek.module {path}: {exc.strerror}; install the HSM's PKCS#11 library "
            "(SoftHSM2: `apt-get install softhsm2`) or correct the path"
        ) from None
    if info.st_mode & 0o022 or info.st_uid not in {0, os.getuid()}:
        raise KekUnavailable(
            f"keys.kek.module {path}: the library is writable by group or others, or owned by "
            "another user (it runs inside the proxy, with the keys): make it owned by root "
            "and `chmod go-w` it"
        )


def _check_key(key: pkcs11.SecretKey, key_label: str, where: str) -> bytes:
    """Refuse a key that could leave the device or is not AES-256; return its CKA_ID."""
    attribute = pkcs11.Attribute
    try:
        key_type = key[attribute.KEY_TYPE]
        length = key[attribute.VALUE_LEN]
        sensitive = key[attribute.SENSITIVE]
        extractable = key[attribute.EXTRACTABLE]
        usable = key[attribute.ENCRYPT] and key[attribute.DECRYPT]
        object_id = key[attribute.ID]
    except pkcs11.PKCS11Error as exc:
        raise KekUnavailable(
            f"{where}: cannot read the attributes of key {key_label!r} ({type(exc).__name__})"
        ) from None
    if key_type != pkcs11.KeyType.AES or length != 32:  # noqa: PLR2004 - AES-256
        raise KekUnavailable(f"{where}: key {key_label!r} is not a 256-bit AES key")
    if not sensitive or extractable:
        raise KekUnavailable(
            f"{where}: key {key_label!r} can leave the device (CKA_SENSITIVE false or "
            "CKA_EXTRACTABLE true); a KEK must never be exportable. Make a new one with "
            "`phi-keys rotate-kek --new-config FILE --generate` and move the keystore to it"
        )
    if not usable:
        raise KekUnavailable(
            f"{where}: key {key_label!r} does not allow encrypt and decrypt (CKA_ENCRYPT, "
            "CKA_DECRYPT); a KEK needs both"
        )
    return bytes(object_id or b"")


def _labels(lib: Pkcs11Lib) -> str:
    try:
        labels = sorted(token.label for token in lib.get_tokens() if token.label)
    except pkcs11.PKCS11Error:
        return "unknown"
    return ", ".join(repr(label) for label in labels) or "none"


def _pin_digest(module: str, token_label: str, pin: Pin) -> bytes:
    message = f"{module}\0{token_label}\0{pin.reveal()}".encode()
    return hmac.new(_PIN_SALT, message, hashlib.sha256).digest()
