"""upstream.url: no credentials in it (check-config prints it, the start line logs it)."""

import pytest
from pydantic import ValidationError

from proxy.server_settings import UpstreamSettings


@pytest.mark.parametrize(
    "url", ["http://portaluser:S3cret@127.0.0.1:8000", "http://portaluser@127.0.0.1:8000"]
)
def test_credentials_in_the_upstream_url_are_refused(url):
    with pytest.raises(ValidationError, match="must not carry a user name or password") as info:
        UpstreamSettings.model_validate({"url": url})
    assert "S3cret" not in str(info.value).replace(url, "")


def test_a_plain_upstream_url_is_accepted():
    assert str(UpstreamSettings.model_validate({"url": "http://127.0.0.1:8000"}).url).startswith(
        "http://127.0.0.1:8000"
    )
