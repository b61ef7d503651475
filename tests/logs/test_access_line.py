"""The access line is the same JSON whether it skips the logging module or goes through it."""

import io
import json
import logging
import re

import pytest

from proxy import logs
from proxy.accesslog import AccessRecord, log_access
from proxy.logs import ACCESS_LOGGER, JsonFormatter, configure_logging

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN_LIKE = "phi1.r.0123456789abcdef.ssn.AAAA"


@pytest.fixture
def configured(monkeypatch):
    """Logging as `serve` configures it, writing to a buffer; the old setup restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logs._configured)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("info")
    yield stream
    root.handlers[:], level, logs._configured = saved
    root.setLevel(level)


def _record() -> AccessRecord:
    record = AccessRecord("0123456789abcdef", "GET", "/api/patients/123-45-6789", "10.0.0.1", 0.0)
    record.subject = "https://idp.test|alice"
    record.status = 200
    record.fields = {"decrypted": {"ssn": 3}, "detail": f"saw {TOKEN_LIKE}", "big": 2**70}
    return record


def _formatter_line(record: AccessRecord) -> dict:
    """What JsonFormatter writes for the access record, with the same duration."""
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        log_access(record, finished=1.0)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return json.loads(captured.getvalue())


class TestAccessLine:
    def test_direct_line_equals_the_formatters_line(self, configured):
        """Skipping `logging` changes nothing in the line but the moment it was stamped."""
        log_access(_record(), finished=1.0)
        direct_text = configured.getvalue()
        assert direct_text.endswith("\n")
        assert direct_text.count("\n") == 1
        direct = json.loads(direct_text)
        via_logging = _formatter_line(_record())
        assert TS.match(direct["ts"])
        assert TS.match(via_logging["ts"])
        direct.pop("ts")
        via_logging.pop("ts")
        assert direct == via_logging
        assert list(direct) == list(via_logging)  # same member order too
        assert direct["path"] == "/api/patients/{id}"
        assert direct["detail"] == "saw [token]"  # scrubbed on this path too
        assert direct["big"] == 2**70

    def test_a_log_capture_still_receives_the_line(self, configured, caplog):
        """With another handler listening, the line goes through `logging` and reaches both."""
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            log_access(_record(), finished=1.0)
        assert [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER] == ["request"]
        assert json.loads(configured.getvalue())["request_id"] == "0123456789abcdef"

    def test_access_logger_switched_off_writes_nothing(self, configured):
        """`phi_proxy.access` set above INFO silences the line on the direct path as well."""
        logger = logging.getLogger(ACCESS_LOGGER)
        logger.setLevel(logging.WARNING)
        try:
            log_access(_record(), finished=1.0)
        finally:
            logger.setLevel(logging.NOTSET)
        assert configured.getvalue() == ""

    def test_timestamps_keep_milliseconds_across_seconds(self):
        """The per-second cache never reuses a second's text for the next one."""
        stamp = logs._SecondStamp().stamp
        assert stamp(0.9995) == "1970-01-01T00:00:00.999Z"
        assert stamp(1.0) == "1970-01-01T00:00:01.000Z"
        assert stamp(1.25) == "1970-01-01T00:00:01.250Z"
        assert stamp(86400.5) == "1970-01-02T00:00:00.500Z"
