"""The X-PHI-Break-Glass reason and the claim that allows it: pure parsing, checked broadly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.grants.break_glass_request import (
    MAX_REASON,
    MIN_REASON,
    ReasonRefused,
    claim_allows,
    parse_reason,
)

GOOD = "unconscious patient in ER, allergy history needed"
# What str.isprintable() accepts, drawn directly: filtering arbitrary text for it threw away
# almost every long example.
PRINTABLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))
PRINTABLE_TEXT = st.text(PRINTABLE | st.just(" "), min_size=MIN_REASON, max_size=MAX_REASON)


class TestReason:
    @given(st.lists(st.text(max_size=600), min_size=0, max_size=3))
    def test_any_header_values_give_a_clean_reason_or_a_refusal(self, values):
        """Whatever arrives: the trimmed, printable, 20-500 character reason, or ReasonRefused."""
        try:
            reason = parse_reason(values)
        except ReasonRefused:
            return
        assert len(values) == 1
        assert reason == values[0].strip()
        assert MIN_REASON <= len(reason) <= MAX_REASON
        assert reason.isprintable()

    @given(PRINTABLE_TEXT.filter(str.isprintable))
    def test_printable_reasons_of_the_right_length_are_accepted(self, text):
        """Any printable text of 20 to 500 characters (after trimming) is a reason."""
        if MIN_REASON <= len(text.strip()) <= MAX_REASON:
            assert parse_reason([f"  {text} "]) == text.strip()

    @given(
        st.text(PRINTABLE | st.just(" "), min_size=MIN_REASON, max_size=40).filter(str.isprintable),
        st.characters(categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
    )
    def test_a_control_or_invisible_character_inside_is_refused(self, text, bad):
        """Controls, format characters, lone surrogates and line separators are refused."""
        with pytest.raises(ReasonRefused, match="control or invisible"):
            parse_reason([text[:10] + bad + text[10:]])

    def test_nineteen_characters_are_too_few_even_with_padding(self):
        """The length counts after trimming: spaces do not make a reason."""
        with pytest.raises(ReasonRefused, match="19 characters; write at least 20"):
            parse_reason(["   " + "x" * 19 + "   "])
        assert parse_reason(["x" * 20]) == "x" * 20

    def test_the_header_must_be_sent_exactly_once(self):
        """Two headers (or none) are refused: which reason would count is ambiguous."""
        with pytest.raises(ReasonRefused, match="once"):
            parse_reason([GOOD, GOOD])
        with pytest.raises(ReasonRefused, match="once"):
            parse_reason([])


class TestClaim:
    def test_a_list_claim_must_contain_the_value(self):
        """groups: [...] allows when the value is one of the entries, exactly."""
        assert claim_allows({"groups": ["staff", "phi-break-glass"]}, "groups", "phi-break-glass")
        assert not claim_allows({"groups": ["phi-break-glass-x"]}, "groups", "phi-break-glass")
        assert not claim_allows({"groups": [["phi-break-glass"]]}, "groups", "phi-break-glass")

    def test_a_string_claim_is_the_value_or_holds_it_as_a_word(self):
        """scope-style strings count word by word; substrings do not count."""
        assert claim_allows({"scope": "read phi:break-glass"}, "scope", "phi:break-glass")
        assert claim_allows({"role": "Break Glass"}, "role", "Break Glass")
        assert not claim_allows({"scope": "phi:break-glass-x"}, "scope", "phi:break-glass")

    def test_dotted_names_reach_nested_claims_and_exact_names_win(self):
        """realm_access.roles (Keycloak) is followed; a claim literally named so is read first."""
        nested = {"realm_access": {"roles": ["phi-break-glass"]}}
        assert claim_allows(nested, "realm_access.roles", "phi-break-glass")
        namespaced = {"https://example.org/roles": ["phi-break-glass"]}
        assert claim_allows(namespaced, "https://example.org/roles", "phi-break-glass")
        assert not claim_allows({"realm_access": "x"}, "realm_access.roles", "phi-break-glass")

    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), st.lists))
    def test_other_claim_shapes_never_allow_a_value_they_do_not_hold(self, found):
        """Numbers, booleans, nested lists, missing claims: never allowed by accident."""
        value = "phi-break-glass"
        allowed = claim_allows({"groups": found}, "groups", value)
        if allowed:
            assert found == value or (isinstance(found, str) and value in found.split(" "))
            assert isinstance(found, str) or value in found
