"""`phi-proxy check-config --sample`: each selector's matches in a real body, before deploying."""

import json
from pathlib import Path

import pytest
import yaml

from proxy.cli import main
from proxy.demo.workspace import DemoPorts, create_workspace

PORTS = DemoPorts(proxy=28180, portal=28181, admin=29190)
SSN = "900-11-2222"
PHONE = "555-0100"
SAMPLE = {
    "resourceType": "Patient",
    "patient_id": "p1",
    "practice_id": "practice-a",
    "ssn": SSN,
    "telecom": [{"system": "phone", "value": PHONE}],
    "insurance": [{"member_id": "M-1"}, {"member_id": "M-2"}],
}


@pytest.fixture
def config(tmp_path):
    """The demo's config and keys, plus a phone selector written the way that never matches."""
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    create_workspace(folder, PORTS)
    path = folder / "phi-proxy.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["fields"]["classes"]["phone"] = {"mask": {"text": "[phone]"}}
    data["fields"]["selectors"].append(
        {"class": "phone", "path": "$[?(@.resourceType=='Patient')].telecom[*].value"}
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (tmp_path / "sample.json").write_text(json.dumps(SAMPLE), encoding="utf-8")
    return path


def run(capsys, *args):
    status = main(["check-config", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_each_selector_lists_the_values_it_selects(config, capsys):
    status, out, _ = run(
        capsys, "-c", str(config), "--sample", str(config.parents[1] / "sample.json")
    )
    assert status == 0
    assert "      1 value(s): $.ssn" in out
    assert "2 value(s): $.insurance[0].member_id, $.insurance[1].member_id" in out


def test_a_selector_that_never_matches_is_named_with_the_likely_mistake(config, capsys):
    _, out, err = run(capsys, "-c", str(config), "--sample", str(config.parents[1] / "sample.json"))
    assert "NEVER MATCHED" in out
    (warning,) = [line for line in err.splitlines() if "telecom" in line]
    assert "selects nothing in the sample" in warning
    assert "`$..[?(...)]`" in warning


def test_the_body_a_caller_without_a_grant_sees_is_printed(config, capsys):
    _, out, _ = run(capsys, "-c", str(config), "--sample", str(config.parents[1] / "sample.json"))
    shown = out.split("a caller without a grant would see:\n", 1)[1].split("\nok:", 1)[0]
    assert json.loads(shown)["ssn"] == "***-**-2222"
    assert SSN not in shown
    assert PHONE in shown  # the broken selector: exactly what the operator must see


def test_route_shows_what_the_portal_would_store(config, capsys):
    sample = str(config.parents[1] / "sample.json")
    route = "POST /api/practices/practice-a/patients"
    _, out, _ = run(capsys, "-c", str(config), "--sample", sample, "--route", route)
    stored = out.split("a write route):\n", 1)[1].split("\nok:", 1)[0]
    assert json.loads(stored)["ssn"].startswith("phi1.d.")
    assert SSN not in stored


def test_a_route_that_is_not_a_write_route_shows_the_refusal(config, capsys):
    sample = str(config.parents[1] / "sample.json")
    _, out, _ = run(capsys, "-c", str(config), "--sample", sample, "--route", "POST /api/notes")
    assert "not a write route" in out
    assert "refuses it (422 plaintext_outside_write_route)" in out


def test_route_without_a_sample_is_a_usage_error(config, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["check-config", "-c", str(config), "--route", "POST /x"])
    assert exited.value.code == 2
    assert "--route needs --sample" in capsys.readouterr().err


def test_values_a_remove_mask_leaves_out_are_located_one_by_one(config, capsys):
    """Not as the reasonCode their removal empties: each selected value, where it is."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["fields"]["classes"]["history"]["mask"] = "remove"
    data["fields"]["selectors"].append(
        {"class": "history", "path": "$..reasonCode..['code','display']"}
    )
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    sample = config.parents[1] / "encounter.json"
    encounter = {"resourceType": "Encounter", "reasonCode": [{"coding": [{"code": "1"}]}]}
    sample.write_text(json.dumps(encounter), encoding="utf-8")
    _, out, _ = run(capsys, "-c", str(config), "--sample", str(sample))
    assert "1 value(s): $.reasonCode[0].coding[0].code" in out
    shown = out.split("a caller without a grant would see:\n", 1)[1].split("\nok:", 1)[0]
    assert json.loads(shown) == {"resourceType": "Encounter"}


@pytest.fixture
def xml_config(config):
    """The same config with a CDA SSN selector and one that never matches."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["fields"]["xml_namespaces"] = {"hl7": "urn:hl7-org:v3"}
    data["fields"]["selectors"] += [
        {
            "class": "ssn",
            "xml": "//hl7:patientRole/hl7:id[@root='2.16.840.1.113883.4.1']/@extension",
        },
        {"class": "ssn", "xml": "//hl7:patient/hl7:ssn"},
    ]
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config


def test_an_xml_sample_lists_element_and_attribute_locations(xml_config, capsys):
    """XML samples (by --content-type) get XPath-like locations, and NEVER MATCHED too."""
    cda = Path(__file__).resolve().parents[1] / "fixtures" / "cda-ccd-synthetic.xml"
    _, out, err = run(
        capsys,
        "-c",
        str(xml_config),
        "--sample",
        str(cda),
        "--content-type",
        "application/xml",
        "--route",
        "POST /api/practices/practice-a/patients",
    )
    assert "1 value(s): /ClinicalDocument/recordTarget[1]/patientRole[1]/id[1]/@extension" in out
    assert "xml //hl7:patient/hl7:ssn\n      NEVER MATCHED" in out
    assert any("hl7:ssn" in line and "selects nothing" in line for line in err.splitlines())
    shown = out.split("a caller without a grant would see:\n", 1)[1]
    assert 'extension="***-**-7777"' in shown
    stored = out.split("a write route):\n", 1)[1]
    assert "900-07-7777" not in stored
    assert 'extension="phi1.d.' in stored
