import pytest

from keys.config_file import load_section
from keys.errors import ConfigError
from proxy.transform.settings import FieldSettings, WriteRoutesSettings

GOOD = """
fields:
  classes:
    ssn: {mask: {keep_last: 4, template: "***-**-{last}"}, deterministic: true}
    history: {mask: null}
  selectors:
    - {class: ssn, keys: [ssn]}
    - {class: history, path: "$.patients[*].history"}
write_routes:
  - method: POST
    path: "/api/practices/{practice_id}/patients"
    practice_from: {path_param: practice_id}
"""


def load(tmp_path, text, section, model):
    """Write `text` as a real config file and load one section from it."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_section(path, section, model)


class TestFieldSettings:
    def test_good_config_loads(self, tmp_path):
        """A complete example validates into frozen models."""
        fields = load(tmp_path, GOOD, "fields", FieldSettings)
        assert fields.classes["history"].mask is None
        routes = load(tmp_path, GOOD, "write_routes", WriteRoutesSettings)
        assert routes.root[0].method == "POST"

    def test_remove_is_a_mask(self, tmp_path):
        """`mask: remove` (the member is left out) loads beside null and the other masks."""
        text = GOOD.replace("history: {mask: null}", "history: {mask: remove}")
        fields = load(tmp_path, text, "fields", FieldSettings)
        assert fields.classes["history"].mask == "remove"

    def test_absent_sections_mean_nothing_configured(self, tmp_path):
        """Missing sections give an empty policy and no write routes."""
        assert load(tmp_path, "other: {}\n", "fields", FieldSettings).selectors == ()
        assert load(tmp_path, "other: {}\n", "write_routes", WriteRoutesSettings).root == ()

    @pytest.mark.parametrize(
        ("yaml_text", "needle"),
        [
            ("fields: {selectors: [{class: nope, keys: [x]}]}", "not defined under fields.classes"),
            ("fields: {classes: {a: {}}, selectors: [{class: a, path: '$.x[?(@.y ='}]}", "path"),
            ("fields: {classes: {a: {mask: {keep_last: 4, template: 'xx'}}}}", "{last}"),
            ("fields: {classes: {A-B: {}}}", "field class"),
            ("fields: {classes: {a: {}}, selectors: [{class: a}]}", "exactly one"),
            ("fields: {classes: {a: {mask: {text: 'phi1.x'}}}}", "token prefix"),
            ("fields: {classes: {a: {mask: '[hidden]'}}}", "write {text: '[hidden]'}"),
            ("fields: {classes: {a: {mask: Remove}}}", "is not a mask"),
            (
                "fields: {classes: {a: {}}, selectors: [{class: a, keys: ['a/b']}]}",
                "cannot contain",
            ),
            ("fields: {bogus: 1}", "bogus"),
            (
                "write_routes: [{method: POST, path: '/a/{p}', practice_from: {path_param: q}}]",
                "not a parameter",
            ),
            (
                "write_routes: [{method: POST, path: '/a/x{p}', practice_from: {body_key: q}}]",
                "neither a literal",
            ),
            (
                "write_routes: [{method: GET, path: /a, practice_from: {body_key: q}}]",
                "write_routes.0.method",
            ),
        ],
    )
    def test_bad_configs_name_the_problem(self, tmp_path, yaml_text, needle):
        """Each mistake is reported with its YAML path and what to fix."""
        section = yaml_text.split(":", 1)[0]
        model = FieldSettings if section == "fields" else WriteRoutesSettings
        with pytest.raises(ConfigError) as info:
            load(tmp_path, yaml_text + "\n", section, model)
        assert needle in str(info.value)
