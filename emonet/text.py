"""Numbers as the reports print them."""


def number(value: float, digits: int = 3, sign: bool = False) -> str:
    """`value` with `digits` decimals (and a + for positive values with `sign`), never "-0.000": a value that
    rounds to zero prints as zero, whatever the sign of the float it came from."""
    rounded = round(float(value), digits) + 0.0  # adding +0.0 turns -0.0 into 0.0
    return f"{rounded:{'+' if sign else ''}.{digits}f}"


def plural(count: int, singular: str, many: str | None = None) -> str:
    """"1 frame", "2 frames"; `many` for irregular plurals ("1 person", "3 people")."""
    return f"{count} {singular if count == 1 else (many or singular + 's')}"
