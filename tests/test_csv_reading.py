"""CSV files as exported: the separator found from the first lines (or named by the contract), and a file
that is not UTF-8 named as such, in words that fit the command that read it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from appliance.data.sources import csv_separator, read_source
from tests.conftest import cli


def _orders(path: Path, separator: str, days: int = 10, encoding: str = "utf-8") -> Path:
    """String shop codes with a comma in some names, an integer quantity, a float price, a 0/1 target."""
    rng = np.random.default_rng(4)
    lines = [separator.join(["shop", "placed_at", "quantity", "price", "returned"])]
    for i in range(days * 60):
        at = (datetime(2026, 9, 1) + timedelta(minutes=24 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        shop = rng.choice(["Zürich", "Genève", "Basel"])
        lines.append(separator.join([shop, at, str(rng.integers(1, 9)), f"{rng.gamma(2, 20):.2f}", str(i % 3 == 0)]))
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.mark.parametrize("separator", [";", "\t", "|", ","])
def test_the_separator_is_found_from_the_header_and_the_lines_after_it(tmp_path, separator):
    path = _orders(tmp_path / "orders.csv", separator)
    assert csv_separator(path) == separator
    frame = read_source(path)
    assert frame.columns == ["shop", "placed_at", "quantity", "price", "returned"] and frame.height == 600


def test_a_separator_that_splits_only_the_header_is_not_taken(tmp_path):
    # the header has a ';' in a name, the rows none: ',' splits every line alike
    path = tmp_path / "x.csv"
    path.write_text("a;b,c\n1,2\n3,4\n")
    assert csv_separator(path) == ","


def test_init_and_ingest_read_a_semicolon_file(tmp_path):
    source = _orders(tmp_path / "orders.csv", ";")
    code, out, err = cli(
        tmp_path / "home", "init", "--from", str(source), "--target", "returned", "--out", str(tmp_path)
    )
    assert code == 0, err
    code, out, err = cli(tmp_path / "home", "ingest", "orders", str(source))
    assert code == 0 and "600 accepted, 0 quarantined" in out, err + out


def test_the_contract_names_the_separator(tmp_path):
    source = _orders(tmp_path / "orders.csv", ";")
    assert cli(tmp_path / "home", "init", "--from", str(source), "--target", "returned", "--out", str(tmp_path))[0] == 0
    contract = tmp_path / "orders.contract.toml"
    contract.write_text(contract.read_text().replace("[contract]\n", '[contract]\nseparator = ","\n'))
    code, _, err = cli(tmp_path / "home", "ingest", "orders", str(source))
    assert code != 0 and "missing column" in err  # split on ',' as the contract says: one column


def test_a_file_that_is_not_utf8_says_so_in_the_words_of_its_command(tmp_path):
    source = _orders(tmp_path / "orders.csv", ",", encoding="latin-1")
    offset = next(i for i, byte in enumerate(source.read_bytes()) if byte > 127)  # the first 'ü' or 'è'

    code, _out, err = cli(
        tmp_path / "home", "init", "--from", str(source), "--target", "returned", "--out", str(tmp_path)
    )
    assert code != 0 and err.count("\n") == 1
    assert f"not UTF-8 (byte {offset:,}): re-save it as UTF-8" in err and "ingest" not in err
    assert not list(tmp_path.glob("*.toml"))

    (tmp_path / "utf8").mkdir()
    utf8 = _orders(tmp_path / "utf8" / "orders.csv", ",")
    assert cli(tmp_path / "home", "init", "--from", str(utf8), "--target", "returned", "--out", str(tmp_path))[0] == 0
    code, _, err = cli(tmp_path / "home", "ingest", "orders", str(source))
    assert code != 0 and err.count("\n") == 1 and "not UTF-8" in err and "ingest it again" in err
