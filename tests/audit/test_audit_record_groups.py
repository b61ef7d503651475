"""The audit line's record groups are the same whichever way they are found."""

from hypothesis import given
from hypothesis import strategies as st

from proxy.audit.records import _groups, group_records

CLASSES = st.frozensets(st.sampled_from(["ssn", "insurance_id", "history"]), max_size=3)
KEYS = st.tuples(st.sampled_from(["pr-a", "pr-b"]), st.text("0123456789", min_size=1, max_size=4))


@given(st.dictionaries(KEYS, CLASSES.map(set), max_size=20))
def test_any_page_groups_as_the_general_grouping_does(disclosures):
    """Random pages: mixed practices and class sets, empty sets, and single-group pages."""
    assert group_records(disclosures) == _groups(disclosures)


@given(st.sets(st.text("0123456789", min_size=1, max_size=4), min_size=1), CLASSES)
def test_a_uniform_page_is_one_group(records, classes):
    """Every record of one practice showing the same classes: one group naming them all."""
    disclosures = {("pr-a", record_id): set(classes) for record_id in records}
    expected = (
        [{"field_classes": sorted(classes), "practice": "pr-a", "records": sorted(records)}]
        if classes
        else []
    )
    assert group_records(disclosures) == expected
