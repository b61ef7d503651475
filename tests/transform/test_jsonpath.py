import pytest

from proxy.transform.jsonpath import PathMatcher, PathSyntaxError, compile_path
from proxy.transform.names import normalize_name


def norm(name):
    """Normalize as the default policy does."""
    return normalize_name(name, fold_separators=True)


def select(path, doc, root_filter=None):
    """Every (location, value) the path selects, by running the matcher over the document."""
    matcher = PathMatcher([(compile_path(path, norm, root_filter=root_filter), "c")], norm)
    found = []

    def walk(node, states, where):
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in items:
            is_key = isinstance(node, dict)
            child_states, cls = matcher.step(
                states, norm(key) if is_key else None, 0 if is_key else key, child
            )
            if cls:
                found.append((*where, key))
            walk(child, child_states, (*where, key))

    walk(doc, matcher.initial_for(doc), ())
    return found


DOC = {
    "a": {"b": 1, "list": [{"t": "x", "v": 1}, {"t": "y", "v": 2}]},
    "c": {"b": 3},
    "identifier": [{"system": "s", "value": "V"}, {"System": "s", "Value": "W"}],
}


class TestJsonPath:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("$.a.b", [("a", "b")]),
            ("$['a']['b']", [("a", "b")]),
            ("$..b", [("a", "b"), ("c", "b")]),
            ("$.*.b", [("a", "b"), ("c", "b")]),
            ("$.a.list[1].v", [("a", "list", 1, "v")]),
            ("$.a.list[*].v", [("a", "list", 0, "v"), ("a", "list", 1, "v")]),
            ("$..list[?(@.t == 'y')].v", [("a", "list", 1, "v")]),
            ("$..list[?@.t != 'y'].v", [("a", "list", 0, "v")]),
            ("$..list[?(@.t && @.v == 2)]", [("a", "list", 1)]),
            (
                "$.identifier[?(@.system=='s')].value",
                [("identifier", 0, "value"), ("identifier", 1, "Value")],
            ),
        ],
    )
    def test_selection(self, path, expected):
        """The subset selects what JSONPath would, with key names compared normalized."""
        assert select(path, DOC) == expected

    @pytest.mark.parametrize(
        "path", ["a.b", "$", "$.", "$[", "$[-1]", "$[?(@.a == )]", "$[?(a)]", "$['x'", "$.a b"]
    )
    def test_syntax_errors(self, path):
        """Anything outside the subset is refused with a position."""
        with pytest.raises(PathSyntaxError, match="position"):
            compile_path(path, norm)

    def test_filter_literals_compare_as_json(self):
        """JSON true is not 1, numbers compare by value, null only equals null."""
        doc = {"x": [{"k": True}, {"k": 1}, {"k": 1.0}, {"k": None}]}
        assert select("$.x[?(@.k == 1)]", doc) == [("x", 1), ("x", 2)]
        assert select("$.x[?(@.k == true)]", doc) == [("x", 0)]
        assert select("$.x[?(@.k == null)]", doc) == [("x", 3)]


class TestRootFilter:
    """`root_filter`: a path that applies only when the document root meets a filter."""

    def test_the_path_applies_when_the_root_meets_the_filter(self):
        condition = {"resourceType": "Condition", "code": {"text": "Flu"}}
        assert select("$.code.text", condition, "@.resourceType == 'Condition'") == [
            ("code", "text")
        ]

    @pytest.mark.parametrize(
        "doc", [{"resourceType": "Observation", "code": {"text": "x"}}, [{"code": 1}], "Condition"]
    )
    def test_the_path_does_not_apply_otherwise(self, doc):
        assert select("$..code", doc, "@.resourceType == 'Condition'") == []

    def test_conditions_combine_and_names_compare_normalized(self):
        doc = {"Resource_Type": "Condition", "status": "x", "code": 1}
        assert select("$.code", doc, "@.resourcetype == 'Condition' && @.status") == [("code",)]
        assert select("$.code", doc, "(@.resourceType == 'Condition' && @.missing)") == []
        assert select("$.code", doc, "@.status != 'y'") == [("code",)]

    @pytest.mark.parametrize("text", ["", "resourceType == 'x'", "@.a == ", "@.a == 'x' b", "$.a"])
    def test_a_malformed_root_filter_is_refused_with_a_position(self, text):
        with pytest.raises(PathSyntaxError, match="position"):
            compile_path("$.a", norm, root_filter=text)
