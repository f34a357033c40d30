"""GSM 7-bit character tables: the default alphabet, its extension, and national language shift tables.

3GPP TS 23.038 6.2.1 (default alphabet), 6.2.1.1 (extension table, reached by the escape 0x1B) and
annex A (national language single shift tables A.2.x and locking shift tables A.3.x). A locking shift
replaces the default table for the whole message; a single shift replaces the extension table. Spanish has
a single shift table only (A.3.2 is void), so its "locking" table is the default alphabet.

Only differences from the default tables are written out below, so a reviewer can compare them with the
spec line by line.
"""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType
from typing import Final

ESCAPE: Final = 0x1B

# TS 23.038 6.2.1: the 128 code points of the default alphabet, in code order; 0x1B is the escape to the
# extension table and is written here as U+001B only as a placeholder (it is never encodable as text).
DEFAULT_ALPHABET: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

# TS 23.038 6.2.1.1: the extension table (0x0A is the page break, i.e. form feed).
DEFAULT_EXTENSION: Final[dict[int, str]] = {
    0x0A: "\x0c", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\",
    0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€",
}  # fmt: skip


class NationalLanguage(IntEnum):
    """TS 23.038 6.2.1.2.4: national language identifiers, carried in UDH IEs 0x24 / 0x25 (TS 23.040)."""

    TURKISH = 0x01
    SPANISH = 0x02
    PORTUGUESE = 0x03


# TS 23.038 A.3.1 / A.3.3: locking shift tables, as changes to the default alphabet.
_LOCKING_CHANGES: Final[dict[NationalLanguage, dict[int, str]]] = {
    NationalLanguage.TURKISH: {
        0x04: "€", 0x07: "\u0131", 0x0B: "Ğ", 0x0C: "ğ", 0x1C: "Ş", 0x1D: "ş", 0x40: "İ", 0x60: "ç",
    },
    NationalLanguage.PORTUGUESE: {
        0x04: "ê", 0x06: "ú", 0x07: "í", 0x08: "ó", 0x09: "ç", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á",
        0x0F: "á", 0x12: "ª", 0x13: "Ç", 0x14: "À", 0x15: "∞", 0x16: "^", 0x17: "\\", 0x18: "€",
        0x19: "Ó", 0x1A: "|", 0x1C: "Â", 0x1D: "â", 0x1E: "Ê", 0x24: "º", 0x40: "Í", 0x5B: "Ã",
        0x5C: "Õ", 0x5D: "Ú", 0x60: "~", 0x7B: "ã", 0x7C: "õ", 0x7D: "`",
    },
}  # fmt: skip

# TS 23.038 A.2.1 / A.2.2 / A.2.3: single shift tables, complete (they replace the extension table).
_SINGLE_SHIFT: Final[dict[NationalLanguage, dict[int, str]]] = {
    NationalLanguage.TURKISH: {
        **DEFAULT_EXTENSION,
        0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x67: "ğ", 0x69: "\u0131", 0x73: "ş",
    },
    NationalLanguage.SPANISH: {
        **DEFAULT_EXTENSION,
        0x09: "ç", 0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x61: "á", 0x69: "í", 0x6F: "ó", 0x75: "ú",
    },
    NationalLanguage.PORTUGUESE: {
        **DEFAULT_EXTENSION,
        0x05: "ê", 0x09: "ç", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á", 0x0F: "á", 0x12: "Φ", 0x13: "Γ",
        0x15: "Ω", 0x16: "Π", 0x17: "Ψ", 0x18: "Σ", 0x19: "Θ", 0x1F: "Ê", 0x41: "À", 0x49: "Í",
        0x4F: "Ó", 0x55: "Ú", 0x5B: "Ã", 0x5C: "Õ", 0x61: "Â", 0x69: "í", 0x6F: "ó", 0x75: "ú",
        0x7B: "ã", 0x7C: "õ", 0x7F: "â",
    },
}  # fmt: skip


def basic_table(locking: NationalLanguage | None) -> str:
    """The 128-character table for a locking shift (None: the default alphabet)."""
    if locking is None or locking not in _LOCKING_CHANGES:
        return DEFAULT_ALPHABET
    cells = list(DEFAULT_ALPHABET)
    for code, char in _LOCKING_CHANGES[locking].items():
        cells[code] = char
    return "".join(cells)


def extension_table(single: NationalLanguage | None) -> MappingProxyType[int, str]:
    """The extension table for a single shift (None: the default extension table)."""
    return MappingProxyType(DEFAULT_EXTENSION if single is None else _SINGLE_SHIFT[single])


def has_locking_table(language: NationalLanguage) -> bool:
    """Spanish has no locking shift table (TS 23.038 A.3.2 is void)."""
    return language in _LOCKING_CHANGES
