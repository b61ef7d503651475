"""A request event's `records`: which records' which field classes were disclosed, per version.

Line format 1 listed one object per record, `{"practice", "record", "field_classes"}`: ~90 bytes
a record, most of it the same practice and classes repeated. Format 2 (written from now on)
lists one group per distinct (practice, class set), `{"practice", "field_classes", "records"}`
with both lists sorted and the groups sorted by (practice, field_classes): a page of records
disclosed alike is one group. Both say exactly the same (practice, record, classes) triples;
`disclosed_records` reads either, so reports never depend on which proxy wrote the line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping

__all__ = ["disclosed_groups", "disclosed_records", "group_records"]


def group_records(disclosures: Mapping[tuple[str, str], Collection[str]]) -> list[dict[str, Any]]:
    """The format-2 groups of (practice, record id) → classes; records without a class left out.

    One pass over `disclosures`, keyed by frozenset (cheaper to build and hash per record than
    a sorted tuple); each distinct class set is sorted once, at the end. A page whose records
    all show the same classes of one practice (the usual page) is one group, found without
    building a key per record.
    """
    single = _single_group(disclosures)
    return single if single is not None else _groups(disclosures)


def _groups(disclosures: Mapping[tuple[str, str], Collection[str]]) -> list[dict[str, Any]]:
    """`group_records` for any page: one key per record."""
    groups: dict[tuple[str, frozenset[str]], list[str]] = {}
    for (practice, record_id), classes in disclosures.items():
        if classes:
            key = (practice, frozenset(classes))
            ids = groups.get(key)
            if ids is None:
                groups[key] = [record_id]
            else:
                ids.append(record_id)
    ordered = sorted(
        ((practice, sorted(classes)), ids) for (practice, classes), ids in groups.items()
    )
    return [
        {"field_classes": classes, "practice": practice, "records": sorted(ids)}
        for (practice, classes), ids in ordered
    ]


def _single_group(
    disclosures: Mapping[tuple[str, str], Collection[str]],
) -> list[dict[str, Any]] | None:
    """The one group when every record shows the same non-empty classes of one practice."""
    values = iter(disclosures.values())
    first = next(values, None)
    if not first or not all(classes == first for classes in values):
        return None
    practices = {practice for practice, _ in disclosures}
    if len(practices) != 1:
        return None
    return [
        {
            "field_classes": sorted(frozenset(first)),
            "practice": practices.pop(),
            "records": sorted(record_id for _, record_id in disclosures),
        }
    ]


def _text_list(value: object) -> list[str]:
    """A list of strings from an event, or nothing: an edited line never crashes the report."""
    return [str(item) for item in value] if isinstance(value, list) else []


def disclosed_groups(event: Mapping[str, Any]) -> Iterator[tuple[str, list[str], list[str]]]:
    """(practice, record ids, field classes) of every group of records a request event names.

    A v2 group as written; a v1 record as a group of one. `disclosed_records` spelled out per
    record; the report counts per group, which a one-day report over a busy practice (~200,000
    rows) feels. A line of a format this code does not know yields nothing here; `verify`
    refuses it.
    """
    items = event.get("records")
    if not isinstance(items, list):
        return
    version = event.get("v")
    for item in items:
        if not isinstance(item, dict):
            continue
        practice, classes = str(item.get("practice")), _text_list(item.get("field_classes"))
        if version == 1:
            yield practice, [str(item.get("record"))], classes
        elif version == 2:  # noqa: PLR2004 - the format number
            yield practice, _text_list(item.get("records")), classes


def disclosed_records(event: Mapping[str, Any]) -> Iterator[tuple[str, str, list[str]]]:
    """(practice, record id, field classes) of every record a request event names, v1 or v2.

    A line of a format this code does not know yields nothing here; `verify` refuses it.
    """
    for practice, record_ids, classes in disclosed_groups(event):
        for record_id in record_ids:
            yield practice, record_id, classes
