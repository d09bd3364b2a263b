"""Reading a bulk CSV upload into code orders, row by row."""

from __future__ import annotations

from verification.console.service import MAX_BULK_ROWS, CodeOrder, RowError, parse_bulk_rows


def test_rows_become_orders_with_a_header_and_blank_lines_skipped() -> None:
    text = "test_type,symptom_date,test_date\nconfirmed,2026-11-20,\n\nlikely,,2026-11-21\n"

    assert parse_bulk_rows(text) == [
        (2, CodeOrder("confirmed", "2026-11-20", "")),
        (4, CodeOrder("likely", "", "2026-11-21")),
    ]


def test_a_row_with_too_many_columns_is_an_error_of_its_line() -> None:
    rows = parse_bulk_rows("confirmed,2026-11-20,\nconfirmed,a,b,c\n")

    assert rows[1] == (2, RowError(2, "unparsable_request", "a row has at most 3 columns"))


def test_too_many_rows_is_one_error() -> None:
    rows = parse_bulk_rows("confirmed,,\n" * (MAX_BULK_ROWS + 1))

    assert len(rows) == 1
    assert rows[0][0] == MAX_BULK_ROWS + 1
    assert isinstance(rows[0][1], RowError)
