"""INS-NIR / INS-NIA control keys, RPPS shape, and the Identifier walk over resources."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygie.errors import InvalidIdentifier, InvalidResource
from hygie.fhir.identifiers import (
    INS_NIA_SYSTEM,
    INS_NIR_SYSTEM,
    RPPS_SYSTEM,
    check_identifier,
    nir_key,
    nir_key_is_valid,
    validate_identifiers,
)

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
VALID_NIRS = ["295109912611193", "253072B07300470", "253072A07300443"]
BAD_KEY_NIR = "295109912611199"

digits13 = st.text(alphabet="0123456789", min_size=13, max_size=13)
corsican13 = st.tuples(
    st.text(alphabet="0123456789", min_size=5, max_size=5),
    st.sampled_from(["2A", "2B"]),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
).map("".join)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def error_of(system: str, value: str) -> InvalidIdentifier:
    with pytest.raises(InvalidIdentifier) as info:
        check_identifier(system, value)
    return info.value


# -- constants and key computation -------------------------------------------------------------


def test_system_constants() -> None:
    assert INS_NIR_SYSTEM == "urn:oid:1.2.250.1.213.1.4.8"
    assert INS_NIA_SYSTEM == "urn:oid:1.2.250.1.213.1.4.9"
    assert RPPS_SYSTEM == "urn:oid:1.2.250.1.71.4.2.1"


@pytest.mark.parametrize("value", VALID_NIRS)
def test_valid_examples(value: str) -> None:
    assert nir_key_is_valid(value)
    check_identifier(INS_NIR_SYSTEM, value)
    check_identifier(INS_NIA_SYSTEM, value)


def test_corsica_is_replaced_before_the_computation() -> None:
    assert nir_key("253072A073004") == 97 - 2530719073004 % 97 == 43
    assert nir_key("253072B073004") == 97 - 2530718073004 % 97 == 70


def test_wrong_key() -> None:
    assert not nir_key_is_valid(BAD_KEY_NIR)


@pytest.mark.parametrize("value", [
    "",
    "29510991261119",  # 14 characters
    "2951099126111930",  # 16 characters
    "2 95 10 99 126 111 93",  # spaces
    " 295109912611193",
    "295109912611193 ",
    "253072a07300443",  # lower-case Corsica
    "2530A2A07300443",  # letter outside positions 6-7
    "25307AB07300443",
    "2951099126111A3",  # letter in the key
    "２９５１０９９１２６１１１９３",  # full-width digits
    "٢٩٥١٠٩٩١٢٦١١١٩٣",  # Arabic-Indic digits
])
def test_refuses_other_shapes(value: str) -> None:
    assert not nir_key_is_valid(value)


def test_nir_key_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError):
        nir_key("12345")


@given(digits13)
def test_any_13_digits_with_computed_key_validate(body: str) -> None:
    key = nir_key(body)
    assert 1 <= key <= 97
    assert nir_key_is_valid(f"{body}{key:02d}")


@given(corsican13)
def test_corsican_bodies_with_computed_key_validate(body: str) -> None:
    assert nir_key_is_valid(f"{body}{nir_key(body):02d}")


@given(st.one_of(digits13, corsican13), st.integers(min_value=0, max_value=99))
def test_any_other_key_fails(body: str, key: int) -> None:
    assert nir_key_is_valid(f"{body}{key:02d}") == (key == nir_key(body))


# -- check_identifier -------------------------------------------------------------------------


def test_wrong_key_message_names_the_system_not_the_value() -> None:
    err = error_of(INS_NIR_SYSTEM, BAD_KEY_NIR)
    assert "INS-NIR" in err.message and INS_NIR_SYSTEM in err.message
    assert "control key" in err.message
    assert BAD_KEY_NIR not in err.message and BAD_KEY_NIR[:13] not in err.message
    assert err.status == 400 and err.code == "invalid-identifier"
    assert isinstance(err, InvalidResource)


def test_shape_message_says_what_is_expected() -> None:
    err = error_of(INS_NIA_SYSTEM, "2 95 10 99 126 111 93")
    assert "INS-NIA" in err.message and INS_NIA_SYSTEM in err.message
    assert "13 digits" in err.message and "2A/2B" in err.message and "2-digit key" in err.message
    assert "2 95" not in err.message


def test_non_string_ins_value_is_refused() -> None:
    with pytest.raises(InvalidIdentifier):
        check_identifier(INS_NIR_SYSTEM, 295109912611193)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["10003456789", "00000000000"])
def test_rpps_valid(value: str) -> None:
    check_identifier(RPPS_SYSTEM, value)


@pytest.mark.parametrize("value", ["1000345678", "100034567890", "1000345678A", "10003 56789",
                                   "810003456789"])
def test_rpps_invalid(value: str) -> None:
    err = error_of(RPPS_SYSTEM, value)
    assert "RPPS" in err.message and "11 digits" in err.message
    assert value not in err.message


@pytest.mark.parametrize("system", [None, "http://example.org/mrn", "urn:oid:1.2.250.1.213.1.4.10"])
def test_other_systems_are_not_checked(system: str | None) -> None:
    check_identifier(system, "anything at all")


def test_missing_value_is_not_checked() -> None:
    check_identifier(INS_NIR_SYSTEM, None)


@given(st.text(alphabet="0123456789AB -", min_size=8, max_size=20))
def test_no_message_contains_the_value(value: str) -> None:
    for system in (INS_NIR_SYSTEM, INS_NIA_SYSTEM, RPPS_SYSTEM):
        try:
            check_identifier(system, value)
        except InvalidIdentifier as err:
            assert value not in err.message
            assert value not in str(err)


# -- validate_identifiers over resources ------------------------------------------------------


def ins(value: str, system: str = INS_NIR_SYSTEM) -> dict[str, str]:
    return {"system": system, "value": value}


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **extra}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_real_examples_pass(name: str) -> None:
    validate_identifiers(load(name))


def test_valid_ins_on_a_real_patient_passes() -> None:
    body = load("Patient-f001.json")
    body["identifier"].append(ins(VALID_NIRS[0]))
    body["identifier"].append(ins(VALID_NIRS[1], INS_NIA_SYSTEM))
    validate_identifiers(body)


def test_top_level_identifier_is_checked() -> None:
    body = load("Patient-f001.json")
    body["identifier"].append(ins(BAD_KEY_NIR))
    with pytest.raises(InvalidIdentifier) as info:
        validate_identifiers(body)
    assert BAD_KEY_NIR not in info.value.message


@pytest.mark.parametrize("body", [
    patient(identifier=ins(BAD_KEY_NIR)),  # a single Identifier, not a list
    patient(contact=[{"name": {"family": "X"}, "identifier": [ins(BAD_KEY_NIR)]}]),
    patient(generalPractitioner=[{"identifier": ins("123", RPPS_SYSTEM)}]),  # Reference
    patient(contained=[{"resourceType": "Patient", "id": "c", "identifier": [ins("1")]}]),
    patient(extension=[{"url": "http://example.org/x", "valueIdentifier": ins(BAD_KEY_NIR)}]),
    {"resourceType": "DocumentReference", "masterIdentifier": ins(BAD_KEY_NIR)},
    {"resourceType": "Bundle", "type": "transaction",
     "entry": [{"resource": patient(identifier=[ins(BAD_KEY_NIR)])}]},
], ids=["single", "contact", "reference", "contained", "extension", "master", "bundle"])
def test_nested_identifiers_are_checked(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier):
        validate_identifiers(body)


def test_nested_valid_identifiers_pass() -> None:
    obs = load("Observation-f002.json")
    obs["subject"]["identifier"] = ins(VALID_NIRS[2])
    obs["performer"][0]["identifier"] = ins("10003456789", RPPS_SYSTEM)
    validate_identifiers(obs)


def test_walk_does_not_modify_the_resource() -> None:
    body = load("DocumentReference-example.json")
    before = copy.deepcopy(body)
    validate_identifiers(body)
    assert body == before


def test_deep_nesting_does_not_recurse() -> None:
    node: dict[str, Any] = {"identifier": [ins(BAD_KEY_NIR)]}
    for _ in range(5000):
        node = {"extension": [node]}
    with pytest.raises(InvalidIdentifier):
        validate_identifiers(patient(extension=[node]))
