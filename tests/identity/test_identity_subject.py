import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.identity import Caller, Subject

printable = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=40
)


class TestSubject:
    @given(issuer=printable.filter(lambda s: "|" not in s), sub=printable)
    def test_str_and_parse_round_trip(self, issuer, sub):
        """Any valid subject survives str() then parse(), even when sub contains '|'."""
        subject = Subject(issuer, sub)
        assert Subject.parse(str(subject)) == subject

    def test_parse_splits_at_first_bar(self):
        """The issuer ends at the first '|'; the rest is the sub."""
        assert Subject.parse("https://a.test|x|y") == Subject("https://a.test", "x|y")

    @pytest.mark.parametrize("text", ["no-separator", "|sub-only", "https://a.test|", "", "|"])
    def test_parse_rejects_missing_parts(self, text):
        """A subject without an issuer or a sub is refused."""
        with pytest.raises(ValueError, match=r"issuer|ISSUER"):
            Subject.parse(text)

    def test_same_sub_from_two_issuers_differs(self):
        """(issuer, sub) is the identity: the same sub at two issuers is two people."""
        assert Subject("https://a.test", "42") != Subject("https://b.test", "42")


class TestCaller:
    def test_anonymous(self):
        """The anonymous caller has no subject and says so in its repr."""
        assert Caller.anonymous.is_anonymous
        assert Caller.anonymous.subject is None
        assert repr(Caller.anonymous) == "Caller(anonymous)"

    def test_verified_caller_repr_names_subject_only(self):
        """A verified caller's repr shows the subject and token id, nothing else."""
        caller = Caller(Subject("https://a.test", "u1"), token_id="j1")
        assert not caller.is_anonymous
        assert repr(caller) == "Caller(subject='https://a.test|u1', token_id='j1')"
