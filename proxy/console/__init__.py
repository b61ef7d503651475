"""The access review console: web pages for compliance officers on the admin API listener.

Served under /console/ when admin_api.console.enabled (docs/console.md): Grants, Access review,
Break-glass and Incident views, server-rendered (Jinja2), strict CSP, OIDC login, sealed session
cookies, CSRF-checked forms, every change through proxy.admin_api.operations (audited).
"""
