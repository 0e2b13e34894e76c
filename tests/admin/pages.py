"""
Reading the admin's pages as a person does: the text of an element, the rows of a list, the
actions on offer, the messages shown. A tiny tree built with the standard library's parser.
"""

from html.parser import HTMLParser

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    @property
    def classes(self):
        return (self.attrs.get("class") or "").split()

    @property
    def text(self):
        """The node's text with runs of white space made one space, as a browser shows it."""
        return " ".join("".join(self._texts()).split())

    def _texts(self):
        for child in self.children:
            if isinstance(child, str):
                yield child
            else:
                if child.tag in ("td", "th", "li", "p", "div", "tr", "br", "option"):
                    yield " "
                yield from child._texts()

    def iter(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(self, tag=None, **attrs):
        """Descendants with this tag (any if None) whose attributes match; `class_` matches one class."""
        wanted_class = attrs.pop("class_", None)
        return [
            node for node in self.iter()
            if (tag is None or node.tag == tag)
            and (wanted_class is None or wanted_class in node.classes)
            and all(node.attrs.get(name) == value for name, value in attrs.items())
        ]

    def find(self, tag=None, **attrs):
        found = self.find_all(tag, **attrs)
        return found[0] if found else None


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, attrs, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(response_or_html):
    html = response_or_html if isinstance(response_or_html, str) else response_or_html.content.decode()
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def page_text(response):
    return parse(response).text


def by_id(response, element_id):
    node = parse(response).find(id=element_id)
    assert node is not None, f"no element #{element_id} on the page"
    return node


def rows(response):
    """A changelist's rows as {column (the field-* class): text}, plus "pk" from the row's checkbox if any."""
    table = parse(response).find("table", id="result_list")
    if table is None:
        return []
    found = []
    for tr in table.find("tbody").find_all("tr"):
        row = {}
        for cell in tr.children:
            if not isinstance(cell, Node) or cell.tag not in ("td", "th"):
                continue
            for name in cell.classes:
                if name.startswith("field-"):
                    row[name.removeprefix("field-")] = cell.text
            checkbox = cell.find("input", name="_selected_action")
            if checkbox is not None:
                row["pk"] = checkbox.attrs["value"]
        found.append(row)
    return found


def column(response, name):
    """One column of a changelist, top to bottom."""
    return [row[name] for row in rows(response)]


def row_of(response, column_name, value):
    matching = [row for row in rows(response) if row.get(column_name) == value]
    assert len(matching) == 1, f"{value} is not once in the list: {rows(response)}"
    return matching[0]


def actions(response):
    """The actions the changelist's action menu offers (empty when it has no menu)."""
    select = parse(response).find("select", name="action")
    if select is None:
        return []
    return [option.attrs["value"] for option in select.find_all("option") if option.attrs.get("value")]


def messages(response):
    """The messages shown at the top of the page, as shown (the admin capitalises their first letter)."""
    listing = parse(response).find("ul", class_="messagelist")
    return [] if listing is None else [li.text for li in listing.find_all("li")]


def readonly_field(response, name):
    """The shown value of a read-only field on a detail page."""
    row = parse(response).find(class_=f"field-{name}")
    assert row is not None, f"no field {name} on the page"
    value = row.find(class_="readonly")
    return value.text if value is not None else row.text


def checked(response_or_node, name):
    """The value of the checked radio button `name`."""
    node = response_or_node if isinstance(response_or_node, Node) else parse(response_or_node)
    (value,) = [radio.attrs["value"] for radio in node.find_all("input", name=name) if "checked" in radio.attrs]
    return value
