"""
assert_no_trace_of(secret, text): no piece of a secret in a message, a log or a traceback,
in any of the forms Python prints a character in.
"""


def assert_no_trace_of(secret, text, shortest=4):
    """
    No piece of `secret` `shortest` characters long or longer, nor any of its non-ASCII
    characters however escaped (as itself, \\u20ac, its UTF-8 bytes in hex), is in `text`.
    """
    for size in range(shortest, len(secret) + 1):
        for start in range(len(secret) - size + 1):
            piece = secret[start:start + size]
            if piece.strip():
                assert piece not in text, f"{piece!r} of the secret is shown"
    for char in secret:
        if not char.isascii():
            escaped = ascii(char)[1:-1]
            for form in (char, escaped, escaped.upper(), char.encode("utf-8").hex(), repr(char.encode("utf-8"))[2:-1]):
                assert form not in text, f"{form!r} (a character of the secret) is shown"
