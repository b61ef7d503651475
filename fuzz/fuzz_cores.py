"""Fuzz the compiled transform core against the pure-Python core (`make fuzz`).

Each input is one response body and one byte that picks the caller (no grant, a grant for one
class of one practice, everything of one practice, everything) and the route's practice. Both
cores decide the body for that caller; any difference in bytes or audit facts, a body the pure
core refuses that the compiled core answered, or an exception other than a refusal, is a
finding (libFuzzer stops and writes the input to crash-*; `--replay crash-…` runs it again).

The seed corpus (`fuzz/corpus/`) is committed as templates: `@@class:practice:value@@` becomes
a real token of this run's throwaway keys, so no key material is ever committed. The run's
statistics (inputs, time, findings) are printed at the end; `make fuzz FUZZ_MINUTES=10`.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["proxy", "keys"]):
    from keys.testing import make_keyring
    from proxy.transform import FieldPolicy, RevealContext, TransformStats
    from proxy.transform.settings import FieldSettings
    from proxy.transform.testing import TEST_FIELDS, compare_cores

CORPUS = Path(__file__).parent / "corpus"
_TEMPLATE = re.compile(rb"@@([a-z_]+):([A-C]):([^@]*)@@")
FIELDS = {
    **TEST_FIELDS,
    "selectors": [
        *TEST_FIELDS["selectors"],
        {"class": "history", "path": "$..[?(@.resourceType=='Condition')].note[*].text"},
        {"class": "diagnosis", "path": "$..coding[*].display"},
    ],
}
KEYRING = make_keyring(["A", "B", "C"])
POLICY = FieldPolicy.compile(FieldSettings.model_validate(FIELDS))


class Grants:
    """The caller's access: a set of (practice, class) pairs."""

    def __init__(self, pairs: set[tuple[str, str]]) -> None:
        self.pairs = frozenset(pairs)

    def allows(self, practice: str, field_class: str) -> bool:
        """True if the caller may see `field_class` values of `practice`."""
        return (practice, field_class) in self.pairs


_CLASSES = tuple(TEST_FIELDS["classes"])
CALLERS = (
    Grants(set()),
    Grants({("A", "ssn")}),
    Grants({("A", c) for c in _CLASSES}),
    Grants({(p, c) for p in "ABC" for c in _CLASSES}),
)
ROUTES = (None, "A", "B")


def materialize(template: bytes) -> bytes:
    """A corpus template with each `@@class:practice:value@@` made a token of this run's keys."""

    def token(match: re.Match[bytes]) -> bytes:
        field_class, practice, value = (part.decode() for part in match.groups())
        deterministic = POLICY.is_deterministic(field_class)
        return KEYRING.encrypt(practice, field_class, value, deterministic=deterministic).encode()

    return _TEMPLATE.sub(token, template)


def test_one_input(data: bytes) -> None:
    """Run both cores on one input; raise on any disagreement."""
    if not data:
        return
    choice, body = data[0], data[1:]
    caller = CALLERS[choice % len(CALLERS)]
    route = ROUTES[(choice // len(CALLERS)) % len(ROUTES)]
    problem = compare_cores(
        body, lambda: RevealContext(POLICY, KEYRING, caller, route, TransformStats())
    )
    if problem is not None:
        raise AssertionError(problem)


def main() -> None:
    """Materialize the corpus into a work folder and hand over to libFuzzer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to fuzz")
    parser.add_argument(
        "--replay", nargs="+", metavar="FILE", help="run these inputs (e.g. a crash-* finding)"
    )
    args, rest = parser.parse_known_args()
    if POLICY.native is None:
        sys.exit("fuzz: the compiled core is not installed (run `make core`); nothing to compare")
    if args.replay:
        for name in args.replay:
            test_one_input(Path(name).read_bytes())
            print(f"fuzz: {name}: the cores agree")
        return
    work = Path(tempfile.mkdtemp(prefix="phi-fuzz-"))
    for seed in sorted(CORPUS.iterdir()):
        for choice in range(len(CALLERS) * len(ROUTES)):
            (work / f"{seed.stem}-{choice}").write_bytes(
                bytes([choice]) + materialize(seed.read_bytes())
            )
    print(f"fuzz: corpus of {len(list(work.iterdir()))} inputs in {work}", flush=True)
    argv = [
        sys.argv[0],
        str(work),
        f"-max_total_time={int(args.minutes * 60)}",
        "-timeout=20",
        "-print_final_stats=1",
        *rest,
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
