"""MRZ parsing and check digits (R3), on the ICAO 9303 specimens and built zones."""

from __future__ import annotations

import datetime

import pytest

from videoid.documents.mrz import MrzError, build_mrz, check_digit, mrz_name, parse_mrz

TODAY = datetime.date(2026, 11, 23)

# ICAO Doc 9303, part 4 (TD3), part 5 (TD1), part 6 (TD2) specimens
TD3 = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
)
TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
)
TD2 = ("I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "D231458907UTO7408122F1204159<<<<<<<6")
TD1_LONG_NUMBER = (
    "I<UTOD23145890<7349<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
)


def test_check_digit_weights_and_values() -> None:
    assert check_digit("L898902C3") == "6"
    assert check_digit("740812") == "2"
    assert check_digit("120415") == "9"
    assert check_digit("<<<<<<") == "0"
    assert check_digit("D23145890") == "7"


@pytest.mark.parametrize(("lines", "fmt"), [(TD3, "TD3"), (TD1, "TD1"), (TD2, "TD2")])
def test_icao_specimens_parse_with_every_check_passing(lines: tuple[str, ...], fmt: str) -> None:
    data = parse_mrz(lines, TODAY)
    assert data.format == fmt
    assert data.issuing_state == "UTO"
    assert data.surname == "ERIKSSON"
    assert data.given_names == "ANNA MARIA"
    assert data.date_of_birth == "1974-08-12"
    assert data.date_of_expiry == "2012-04-15"
    assert data.sex == "F"
    assert data.checks_ok, [c for c in data.checks if not c.ok]
    assert {c.name for c in data.checks} >= {
        "document_number",
        "date_of_birth",
        "date_of_expiry",
        "composite",
    }
    # the specimen expired in 2012 (R3: flagged, not hidden)
    assert data.expired(TODAY) and not data.valid(TODAY)
    assert data.valid(datetime.date(2010, 1, 1))


def test_td3_personal_number_has_its_own_check() -> None:
    data = parse_mrz(TD3, TODAY)
    assert data.document_number == "L898902C3"
    assert data.optional_data == "ZE184226B"
    assert [c.name for c in data.checks].count("personal_number") == 1


def test_td1_long_document_number_continues_in_the_optional_data() -> None:
    data = parse_mrz(TD1_LONG_NUMBER, TODAY)
    assert data.document_number == "D23145890734"
    assert data.checks_ok


@pytest.mark.parametrize(
    ("line", "index", "broken"),
    [
        (1, 9, "document_number"),
        (1, 19, "date_of_birth"),
        (1, 27, "date_of_expiry"),
        (1, 43, "composite"),
    ],
)
def test_a_wrong_check_digit_is_reported_by_name(line: int, index: int, broken: str) -> None:
    lines = list(TD3)
    row = lines[line]
    lines[line] = row[:index] + str((int(row[index]) + 1) % 10) + row[index + 1 :]
    data = parse_mrz(lines, TODAY)
    failed = [c.name for c in data.checks if not c.ok]
    assert broken in failed
    assert not data.checks_ok and not data.valid(datetime.date(2010, 1, 1))


def test_a_changed_field_fails_its_check_and_the_composite() -> None:
    lines = list(TD1)
    lines[1] = "7408132" + lines[1][7:]  # birth date 740813 with the old check digit
    failed = {c.name for c in parse_mrz(lines, TODAY).checks if not c.ok}
    assert failed == {"date_of_birth", "composite"}


@pytest.mark.parametrize(
    "lines",
    [
        (),
        ("P<UTO",),
        (TD3[0], TD3[1][:-1]),
        (TD3[0].replace("<", "?"), TD3[1]),
        (TD3[0].replace("<", "«"), TD3[1]),
        (*TD1[:2],),
    ],
)
def test_not_a_zone_is_refused(lines: tuple[str, ...]) -> None:
    with pytest.raises(MrzError) as err:
        parse_mrz(lines, TODAY)
    assert err.value.code == "mrz_unreadable"


def test_impossible_dates_are_empty_not_guessed() -> None:
    lines = list(TD3)
    lines[1] = lines[1][:13] + "741312" + check_digit("741312") + lines[1][20:]
    data = parse_mrz(lines, TODAY)
    assert data.date_of_birth == ""
    assert not data.valid(datetime.date(2010, 1, 1))


def test_birth_dates_are_never_in_the_future_and_expiry_is_nearest() -> None:
    built = build_mrz(
        "TD3",
        document_code="P",
        issuing_state="ITA",
        document_number="YA1234567",
        surname="Rossi",
        given_names="Mario",
        nationality="ITA",
        date_of_birth=datetime.date(1930, 5, 1),
        sex="M",
        date_of_expiry=datetime.date(2031, 5, 1),
    )
    data = parse_mrz(built, TODAY)
    assert data.date_of_birth == "1930-05-01"
    assert data.date_of_expiry == "2031-05-01"
    assert data.valid(TODAY)


@pytest.mark.parametrize("fmt", ["TD1", "TD2", "TD3"])
def test_built_zones_round_trip(fmt: str) -> None:
    lines = build_mrz(
        fmt,  # type: ignore[arg-type]
        document_code="ID" if fmt != "TD3" else "P",
        issuing_state="POL",
        document_number="ABC123456",
        surname="Wojciechowska-Nowak",
        given_names="Katarzyna Magdalena",
        nationality="POL",
        date_of_birth=datetime.date(1988, 2, 29),
        sex="F",
        date_of_expiry=datetime.date(2030, 1, 31),
    )
    data = parse_mrz(lines, TODAY)
    assert data.checks_ok
    assert data.surname == "WOJCIECHOWSKA NOWAK"
    assert data.date_of_birth == "1988-02-29"


def test_names_are_transliterated_and_long_names_flagged_truncated() -> None:
    assert mrz_name("Müller") == "MUELLER"
    assert mrz_name("Łukasz Żółć") == "LUKASZ<ZOLC"
    assert mrz_name("O'Connor") == "OCONNOR"
    lines = build_mrz(
        "TD1",
        document_code="ID",
        issuing_state="D",
        document_number="T22000129",
        surname="Schwarzenberger-Hohenlohe",
        given_names="Maximilian Alexander",
        nationality="D",
        date_of_birth=datetime.date(1964, 8, 12),
        sex="M",
        date_of_expiry=datetime.date(2030, 10, 31),
    )
    data = parse_mrz(lines, TODAY)
    assert data.names_truncated
    assert data.issuing_state == "D"
