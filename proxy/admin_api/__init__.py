"""The admin API: grants, the access review and the audit report as JSON over HTTP.

AdminApiSettings      the `admin_api:` config section (off by default; a listener of its own)
AdminVerifier         admin bearer tokens: proxy.identity's verifier plus the admin role claim
build_admin_api_app   the aiohttp application (proxy.admin_api.app; with the console when
                      admin_api.console is enabled: proxy.console)
operations            each change and its audit event, shared by the API and the console
openapi_document      the OpenAPI 3.1 document, committed as docs/admin-api.openapi.json
"""

from __future__ import annotations

from proxy.admin_api.settings import AdminApiSettings, AdminApiTls

__all__ = ["AdminApiSettings", "AdminApiTls"]
