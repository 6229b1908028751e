"""The bundled sample: a card-transaction fraud data set, its data contract and its model spec."""

from pathlib import Path

DIR = Path(__file__).resolve().parent
