"""Incident view: every record one person was shown in a time window, from the verified trail.

GET /console/incident asks for a person and a window and shows the notification list with the
trail's verification result above it (a trail that does not verify is said first and loudly,
and what was read is still shown), a chart of disclosures per day per practice with its numbers
in a table beside it, and a link to the CSV. GET /console/incident.csv is that list as the very
bytes `phi-audit report --subject S --since A --until B --format csv` prints. Both read the trail
in the console's trail reader process (proxy.console.trail_reader), never in the proxy's own.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from aiohttp import web
from yarl import URL

from proxy.audit.report import UNKNOWN_RECORD, printable
from proxy.console.chart import stacked_bar_svg
from proxy.console.context import CONSOLE, PREFIX
from proxy.console.errors import ConsoleProblem
from proxy.console.incident import IncidentQuery, IncidentQueryError, load_incident
from proxy.console.pages import audited_read, render, require_session

if TYPE_CHECKING:
    from pathlib import Path

    from proxy.console.chart import BarChart
    from proxy.console.context import ConsoleContext
    from proxy.console.incident import Incident

__all__ = ["add_routes", "incident_values"]

_FIELDS = ("subject", "since", "until")


def _form(request: web.Request) -> dict[str, str]:
    return {name: request.query.get(name, "").strip() for name in _FIELDS}


def _shown_time(text: str) -> str:
    """An event time (2026-03-01T08:15:00.000Z) as the page shows it: 2026-03-01 08:15:00."""
    return text.replace("T", " ").removesuffix("Z").split(".", 1)[0]


def _chart_desc(incident: Incident, chart: BarChart) -> str:
    totals = chart.totals()
    if not any(totals):
        return "No disclosure in this window."
    busiest = max(range(len(totals)), key=totals.__getitem__)
    return (
        f"Stacked bars, one per {'day' if not chart.buckets[0].startswith('week') else 'week'} "
        f"from {chart.buckets[0]} to {chart.buckets[-1]}; each bar is split by practice "
        f"({', '.join(s.label for s in chart.series)}). {incident.disclosures} disclosure(s) "
        f"in all; the most, {totals[busiest]}, on {chart.buckets[busiest]}. The table beside "
        "the chart lists the same numbers."
    )


def _chart_rows(chart: BarChart) -> list[dict[str, Any]]:
    """The chart's numbers for the table beside it: buckets with any disclosure."""
    rows = []
    for i, bucket in enumerate(chart.buckets):
        values = [s.values[i] for s in chart.series]
        if any(values):
            rows.append({"bucket": bucket, "values": values, "total": sum(values)})
    return rows


def _list_rows(incident: Incident) -> list[dict[str, Any]]:
    return [
        {
            "practice": printable(r.practice),
            "record": printable(r.record),
            "field_class": printable(r.field_class),
            "count": r.count,
            "first_seen": _shown_time(r.first_seen),
            "last_seen": _shown_time(r.last_seen),
        }
        for r in incident.rows
    ]


def incident_values(incident: Incident, form: dict[str, str], config_path: Path) -> dict[str, Any]:
    """What incident.html shows of `incident` (every text from the trail made printable)."""
    chart = incident.chart()
    query = incident.query
    csv_href = URL(f"{PREFIX}/incident.csv").with_query({k: v for k, v in form.items() if v})
    program, *rest = query.command()
    return {
        "incident": incident,
        "verification": incident.verification,
        "chart": chart,
        "svg": stacked_bar_svg(
            chart,
            title=f"Disclosures per day and practice to {printable(query.subject)}",
            desc=_chart_desc(incident, chart),
            ident="incident-chart",
        ),
        "chart_rows": _chart_rows(chart),
        "rows": _list_rows(incident),
        "unknown": any(r.record == UNKNOWN_RECORD for r in incident.rows),
        "csv_href": str(csv_href),
        "command": " ".join(map(_quoted, [program, "-c", str(config_path), *rest])),
        "subject": printable(query.subject),
    }


async def page(request: web.Request) -> web.Response:
    """GET /console/incident: the form, and for a person the verified notification list."""
    require_session(request)
    context = request.app[CONSOLE]
    form = _form(request)
    values: dict[str, Any] = {"form": form, "error": None, "error_field": None, "incident": None}
    if form["subject"]:
        try:
            query = IncidentQuery.parse(form["subject"], form["since"], form["until"])
        except IncidentQueryError as exc:
            values["error"] = str(exc)
            values["error_field"] = str(exc).split(":", 1)[0]
            return render(request, "incident.html", status=422, title="Incident", **values)
        await audited_read(request, "incident_view", query.report_filter().described())
        incident = await load_incident(context.api.config_path, query)
        values |= incident_values(incident, form, context.api.config_path)
    return render(request, "incident.html", title="Incident", **values)


def _quoted(arg: str) -> str:
    return shlex.quote(printable(arg))


async def export(request: web.Request) -> web.Response:
    """GET /console/incident.csv: the notification list, byte for byte `phi-audit report`'s CSV.

    A trail that does not verify still exports (as the command still prints), and says so in
    the X-Trail-Verified header and on the page that links here.
    """
    require_session(request)
    context = request.app[CONSOLE]
    form = _form(request)
    try:
        query = IncidentQuery.parse(form["subject"], form["since"], form["until"])
    except IncidentQueryError as exc:
        raise ConsoleProblem(
            422, "The export needs a person and a valid window", f"{exc}. Nothing was exported."
        ) from None
    await audited_read(request, "incident_export", query.report_filter().described())
    incident = await load_incident(context.api.config_path, query)
    return web.Response(
        body=incident.csv().encode(),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{query.filename()}"',
            "X-Trail-Verified": "yes" if incident.verification.verified else "no",
        },
    )


def add_routes(router: web.UrlDispatcher, _context: ConsoleContext) -> None:
    """The incident view and its CSV export."""
    router.add_get(f"{PREFIX}/incident", page)
    router.add_get(f"{PREFIX}/incident.csv", export)
