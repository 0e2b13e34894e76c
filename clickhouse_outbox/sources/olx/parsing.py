"""
OLX files parsed from bytes already read (and size-checked): XML with entity declarations
refused (no entity bombs, no external entities: defusedxml), then its nesting and values
bounded; JSON with its nesting bounded. Anything wrong becomes an OlxError naming the file,
in one line.
"""

import json
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from clickhouse_outbox.sources.olx.errors import OlxError


def parse_xml(data, name, limits):
    """The root element of the XML document `data` (bytes); `name` is the file in messages."""
    try:
        root = _parse(data)
    except EntitiesForbidden as exc:
        raise OlxError(f"{name}: declares the entity {exc.name!r}; entities are refused in course exports") from None
    except ExternalReferenceForbidden as exc:
        raise OlxError(f"{name}: refers to the external entity {exc.sysid!r}; entities are refused") from None
    except DefusedXmlException as exc:
        raise OlxError(f"{name}: refused XML ({type(exc).__name__})") from None
    except (ET.ParseError, LookupError) as exc:  # LookupError: an encoding Python does not know
        raise OlxError(f"{name}: malformed XML ({exc})") from None
    # Cheap bounds first. No entity is ever expanded, so a value's UTF-8 is at most 3 bytes per
    # byte of the file (a single-byte encoding's character can take 3 in UTF-8); and no element
    # nests deeper than the file has `<` bytes. Most files need no walk.
    if len(data) * 3 > limits.value_bytes or data.count(b"<") > limits.depth:
        _check_tree(root, name, limits)
    return root


def _parse(data):
    """
    Parse in one call (expat re-scans a token that spans several feeds: quadratic on huge
    values). Entities can only be declared in a document type declaration, which expat reads
    only as the ASCII bytes `<!DOCTYPE` unless the document is UTF-16 (a BOM or NUL bytes up
    front): without those, the C parser (fast) cannot meet an entity declaration; with them,
    defusedxml's parser refuses any declaration.
    """
    if b"<!DOCTYPE" not in data and b"\x00" not in data[:4] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        parser = ET.XMLParser(target=ET.TreeBuilder())
    else:
        parser = DefusedXMLParser(target=ET.TreeBuilder(), forbid_dtd=False, forbid_entities=True, forbid_external=True)
    parser.feed(data)
    return parser.close()


def _check_tree(root, name, limits):
    """Refuse nesting deeper than `limits.depth` and values over `limits.value_bytes`, walked without recursion."""
    max_bytes = limits.value_bytes
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > limits.depth:
            raise OlxError(f"{name}: elements nested deeper than {limits.depth} levels (CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH)")
        for attribute, value in element.items():
            if _too_long(value, max_bytes):
                raise OlxError(
                    f"{name}: the {attribute!r} attribute of <{element.tag}> is over {max_bytes} bytes "
                    "(CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES)"
                )
        for where, text in (("text in", element.text), ("text after", element.tail)):
            if text and _too_long(text, max_bytes):
                raise OlxError(
                    f"{name}: the {where} <{element.tag}> is over {max_bytes} bytes "
                    "(CLICKHOUSE_OUTBOX_OLX_MAX_VALUE_BYTES)"
                )
        if len(element):
            stack.extend((child, depth + 1) for child in element)


def _too_long(text, max_bytes):
    # A character is at most 4 bytes of UTF-8: encode only the strings that might be too long.
    return len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes


def parse_json(data, name, limits):
    """The JSON value in `data` (UTF-8 bytes, a BOM allowed), nested at most `limits.depth` levels."""
    too_deep = OlxError(f"{name}: values nested deeper than {limits.depth} levels (CLICKHOUSE_OUTBOX_OLX_MAX_DEPTH)")
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise OlxError(f"{name}: not valid JSON ({exc})") from None
    if json_depth(value) > limits.depth:
        raise too_deep
    return value


def json_depth(value):
    """How deeply lists and objects nest in `value` (a scalar is 0 deep), walked without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item)
    return deepest
