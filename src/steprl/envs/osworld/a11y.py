"""OSWorld's accessibility tree as prompt text: one line per named or labelled visible node,
cut to a size limit.

The raw tree (AT-SPI XML from the VM) is often hundreds of kilobytes, far beyond a prompt. Like
OSWorld's own agents, the adapter linearises it into a table (tag, name, text, position, size) of
the nodes a model can act on and cuts it at a line boundary (`env.a11y_max_chars`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

HEADER = "tag\tname\ttext\tposition\tsize"


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def linearize(xml: str) -> list[str]:
    """One tab-separated line per visible node with a name or text (document order)."""
    root = ET.fromstring(xml)
    lines = [HEADER]
    for node in root.iter():
        attrs = {_local(key): value for key, value in node.attrib.items()}
        if attrs.get("visible") == "false" or attrs.get("showing") == "false":
            continue
        name, text = attrs.get("name", "").strip(), (node.text or "").strip()
        if not (name or text):
            continue
        cells = [_local(node.tag), name, text, attrs.get("screencoord", ""), attrs.get("size", "")]
        lines.append("\t".join(" ".join(cell.split()) for cell in cells))
    return lines


def trim_a11y(xml: str | None, max_chars: int | None) -> str | None:
    """The tree as linearised text cut to `max_chars` at a line boundary (None: no limit), with a
    last line saying how many lines were cut. Text that is not XML is cut as it is."""
    if xml is None:
        return None
    try:
        lines = linearize(xml)
    except ET.ParseError:
        lines = xml.splitlines()
    if max_chars is None:
        return "\n".join(lines)
    kept, size = [], 0
    for line in lines:
        if size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    if len(kept) < len(lines):
        kept.append(f"[... {len(lines) - len(kept)} more lines cut at env.a11y_max_chars={max_chars}]")
    return "\n".join(kept)
