"""`phi-proxy`: serve the proxy, check a config file before deploying it, probe its health.

Only argument parsing is imported up front: `--help`, `--version` and usage errors answer at
once (also through `kubectl exec`); each command loads what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from keys.broken_pipe import quiet_on_broken_pipe
from keys.cli_options import CONFIG_ENV_VAR, add_config_option, add_version_option
from keys.errors import ConfigError, PhiProxyError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phi-proxy",
        description="A sidecar reverse proxy that shows PHI only to callers with an active "
        "grant for the practice that owns it, and masks it for everyone else.",
        epilog=f"Every command but demo reads its config from -c FILE (before or after the "
        f"command), or from ${CONFIG_ENV_VAR}.",
    )
    add_config_option(parser, subcommand=False)
    add_version_option(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy until SIGTERM")
    add_config_option(serve, subcommand=True)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the listening sockets, which this process binds once "
        "(default 1)",
    )

    check = commands.add_parser(
        "check-config",
        help="validate a config file, open its keystore, grant store and JWKS files, print a "
        "summary",
    )
    add_config_option(check, subcommand=True)
    check.add_argument(
        "--sample",
        metavar="FILE",
        help="a body the portal really sends (JSON): print which values each selector selects "
        "in it, which selectors select nothing, and what a caller without a grant would see",
    )
    check.add_argument(
        "--route",
        metavar='"METHOD /path"',
        help="with --sample: also print what the portal would store if the sample were sent "
        'there, e.g. --route "POST /api/practices/practice-a/patients"',
    )
    check.add_argument(
        "--content-type",
        default="application/json",
        help="with --sample: the sample's Content-Type (default application/json)",
    )

    demo = commands.add_parser(
        "demo",
        help="run a demo portal behind the proxy with synthetic patients, until Ctrl-C",
        description="Start a naive demo portal and phi-proxy in front of it, in a temporary "
        "folder with fresh keys, grants and synthetic patients; print curl commands to try. "
        "Ctrl-C stops everything and deletes the folder. Demo only, not production.",
    )
    demo.add_argument("--port", type=int, default=8080, help="phi-proxy port (default 8080)")
    demo.add_argument(
        "--portal-port", type=int, default=8081, help="demo portal port (default 8081)"
    )
    demo.add_argument(
        "--admin-port", type=int, default=9090, help="admin /healthz, /readyz port (default 9090)"
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary folder when the demo stops"
    )

    health = commands.add_parser(
        "healthcheck",
        help="probe a running proxy's admin listener (the image's HEALTHCHECK); exit 0 healthy",
        description="GET /healthz (or /readyz) on the admin listener the config names "
        "(admin.host, admin.port; a wildcard host is probed on loopback). Exit 0 when it "
        "answers 200, 1 otherwise, with one line saying why.",
    )
    add_config_option(health, subcommand=True)
    health.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    health.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the answer (default 2)"
    )
    return parser


def _demo(args: argparse.Namespace) -> int:
    from proxy.demo import DemoOptions, PortInUse, SeedError, run_demo  # noqa: PLC0415 - demo only
    from proxy.demo.workspace import DemoPorts  # noqa: PLC0415

    ports = DemoPorts(proxy=args.port, portal=args.portal_port, admin=args.admin_port)
    if not all(1 <= port <= 65535 for port in (ports.proxy, ports.portal, ports.admin)):  # noqa: PLR2004
        print("error: ports must be between 1 and 65535", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_demo(DemoOptions(ports=ports, keep=args.keep))
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SeedError as exc:
        print(f"error: {exc}; the demo stopped and removed its folder", file=sys.stderr)
        return EXIT_FAILURE


@quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `phi-proxy` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check-config" and args.route is not None and args.sample is None:
        parser.error("--route needs --sample FILE (the body to try on that route)")  # exits 2
    if args.command == "demo" and args.config is not None:
        parser.error("demo writes its own config in a temporary folder; drop -c")  # exits 2
    try:
        if args.command == "check-config":
            from proxy.check_config import check_config  # noqa: PLC0415 - see the docstring

            return check_config(args.config, args.sample, args.route, args.content_type)
        if args.command == "demo":
            return _demo(args)
        if args.command == "healthcheck":
            from proxy.healthcheck import healthcheck  # noqa: PLC0415

            return healthcheck(args.config, ready=args.ready, timeout=args.timeout)
        return _serve(args)
    except PhiProxyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE


def _serve(args: argparse.Namespace) -> int:
    from keys.config_file import resolve_config_path  # noqa: PLC0415 - see the docstring
    from proxy.serve import serve  # noqa: PLC0415

    if args.workers < 1:
        print("error: --workers must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    try:
        return serve(resolve_config_path(args.config), workers=args.workers)
    except OSError as exc:  # ssl.SSLError included; the known cases raise our own errors
        print(
            f"error: phi-proxy could not start or stopped: {exc}; fix the file, address or "
            "permission it names, run `phi-proxy check-config`, then start it again",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
