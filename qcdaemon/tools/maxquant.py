"""MaxQuant adapter: the per-run mqpar.xml, the command line, and where the tables land.

MaxQuant writes ``combined/`` into ``<fixedCombinedFolder>`` when the template has that element,
else next to the first raw file, and always puts per-raw scratch folders next to the raw file.
So the raw file given to :func:`write_mqpar` must be a copy staged inside the run's work dir
(``rawtools.stage_raw(raw, work_dir / "maxquant")``), never the instrument's file.
"""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from qcdaemon.errors import ToolError

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)\.(\d+)")
DOTNET_FROM = (2, 6)
# Per-file lists that must have exactly one entry per raw file, with the default entry
# used when the template's list is empty.
_PER_FILE_LISTS = {
    "fractions": ("short", "32767"),
    "ptms": ("boolean", "False"),
    "paramGroupIndices": ("int", "0"),
    "referenceChannel": ("string", ""),
}


# --------------------------------------------------------------------------------------------
# mqpar.xml


def _set_list(parent: ET.Element, child_tag: str, value: str | None) -> None:
    """Leave exactly one child: the first one (text set to ``value`` unless None), keeping the
    template's indentation; create it when the list is empty."""
    children = list(parent)
    if children:
        first, last_tail = children[0], children[-1].tail
        for extra in children[1:]:
            parent.remove(extra)
        first.tail = last_tail
    else:
        indent = parent.text if parent.text and not parent.text.strip() else "\n"
        first = ET.SubElement(parent, child_tag)
        first.tail = indent
        parent.text = indent + "   "
        value = _PER_FILE_LISTS.get(parent.tag, (child_tag, ""))[1] if value is None else value
    if value is not None:
        first.text = value


def _require(root: ET.Element, tag: str, template: Path) -> ET.Element:
    el = root.find(tag)
    if el is None:
        raise ToolError(f"mqpar template {template} has no <{tag}> element")
    return el


def _set_fasta(root: ET.Element, fasta: str, template: Path) -> None:
    """One fasta file, in either form: ``<FastaFileInfo><fastaFilePath>`` or the old ``<string>``."""
    fasta_files = _require(root, "fastaFiles", template)
    infos = fasta_files.findall("FastaFileInfo")
    if infos:
        _set_list(fasta_files, "FastaFileInfo", None)
        path = infos[0].find("fastaFilePath")
        if path is None:
            raise ToolError(f"mqpar template {template}: <FastaFileInfo> without <fastaFilePath>")
        path.text = fasta
    elif len(fasta_files):
        _set_list(fasta_files, "string", fasta)
    else:  # the parse rules of a new entry cannot be guessed
        raise ToolError(f"mqpar template {template} lists no fasta file; make it with one")


def _serialize(root: ET.Element, namespaces: list[tuple[str, str]], newline: str) -> bytes:
    # ElementTree drops namespace declarations nothing uses (MaxQuant's xmlns:xsd/xmlns:xsi);
    # put them back so the file differs from the template only where we changed it.
    used = {tag.split("}")[0][1:] for el in root.iter() for tag in (el.tag, *el.attrib) if tag[0] == "{"}
    for prefix, uri in namespaces:
        if uri not in used:
            root.set(f"xmlns:{prefix}" if prefix else "xmlns", uri)
    body = ET.tostring(root, encoding="unicode", short_empty_elements=False)
    # ElementTree escapes '>' in text ("&gt;([^\s]*)" for the parse rules); '>' is legal there.
    body = re.sub(r"(?<!\]\])&gt;", ">", body)
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"
    return text.replace("\n", newline).encode("utf-8")


def write_mqpar(
    template: Path, out: Path, *, raw: Path, fasta: Path, label: str, threads: int,
    combined_dir: Path | None = None,
) -> None:
    """Write the mqpar.xml of one run from a pipeline template.

    Sets the raw file, the fasta file (both fasta forms), the experiment label, one entry in
    each per-file list (fractions, ptms, paramGroupIndices, referenceChannel), ``numThreads``
    and ``fixedCombinedFolder`` (``combined_dir``, default ``out``'s folder; only where the
    template has the element: MaxQuant 2.6+ dropped it and then writes next to the raw file).
    Everything else, line endings included, is kept as in the template.

    Raises:
        ToolError: the template is missing, not XML, or not a MaxQuant parameter file.
    """
    template, out = Path(template), Path(out)
    try:
        data = template.read_bytes()
        namespaces = [ns for _, ns in ET.iterparse(io.BytesIO(data), events=("start-ns",))]
        root = ET.fromstring(data)
    except FileNotFoundError:
        raise ToolError(f"mqpar template {template} does not exist") from None
    except ET.ParseError as exc:
        raise ToolError(f"mqpar template {template} is not valid XML: {exc}") from None
    if root.tag != "MaxQuantParams":
        raise ToolError(f"mqpar template {template}: root element is <{root.tag}>, not <MaxQuantParams>")

    _set_list(_require(root, "filePaths", template), "string", str(Path(raw).absolute()))
    _set_list(_require(root, "experiments", template), "string", label)
    _set_fasta(root, str(Path(fasta).absolute()), template)
    for tag, (child, _) in _PER_FILE_LISTS.items():
        el = root.find(tag)
        if el is not None:
            _set_list(el, child, None)
    threads_el = root.find("numThreads")
    if threads_el is None:
        threads_el = ET.SubElement(root, "numThreads")
    threads_el.text = str(max(1, int(threads)))
    fixed = root.find("fixedCombinedFolder")
    if fixed is not None:
        fixed.text = str(Path(combined_dir if combined_dir is not None else out.parent).absolute())

    newline = "\r\n" if b"\r\n" in data else "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(_serialize(root, namespaces, newline))
    os.replace(tmp, out)


# --------------------------------------------------------------------------------------------
# Command line


def _version(text: str) -> tuple[int, ...] | None:
    m = _VERSION.search(text)
    return tuple(int(g) for g in m.groups()) if m else None


def mqpar_version(mqpar: Path) -> tuple[int, ...] | None:
    """``<maxQuantVersion>`` of an mqpar file, or None."""
    try:
        el = ET.parse(mqpar).getroot().find("maxQuantVersion")
    except (OSError, ET.ParseError):
        return None
    return _version(el.text or "") if el is not None else None


def maxquant_version(exe: Path, mqpar: Path | None = None) -> tuple[int, ...] | None:
    """MaxQuant's version from the executable's path (``MaxQuant_v2.4.12.0/bin/...``, the
    nearest folder first), else from the mqpar's ``<maxQuantVersion>``."""
    for part in reversed(Path(exe).parts):
        if (v := _version(part)) is not None:
            return v
    return mqpar_version(mqpar) if mqpar is not None else None


def maxquant_argv(
    command: Sequence[str], mqpar: Path, runtime: str = "auto", *, os_name: str = os.name
) -> list[str]:
    """The argv that runs MaxQuant on ``mqpar`` (``MaxQuantCmd mqpar.xml``).

    ``command`` with several items is a full prefix, used as is.  A single path is run by:
    ``runtime='none'`` directly; ``'mono'`` with ``mono <.exe>``; ``'dotnet'`` with
    ``dotnet <.dll>`` (the sibling of an ``.exe``).  ``'auto'``: a ``.dll`` with dotnet; an
    ``.exe`` directly on Windows, else with dotnet (its ``.dll``) from version 2.6 and with mono
    before (version from the path, else the mqpar; unknown counts as old); anything else
    (a launcher script) directly.
    """
    cmd = [str(c) for c in command]
    if not cmd:
        raise ToolError("no MaxQuant command configured ([engine.maxquant] command)")
    target = str(Path(mqpar).absolute())
    if len(cmd) > 1:
        return [*cmd, target]
    exe = Path(cmd[0])
    suffix = exe.suffix.lower()
    if runtime == "none":
        return [cmd[0], target]
    if runtime == "mono":
        return ["mono", str(exe.with_suffix(".exe") if suffix == ".dll" else exe), target]
    if runtime == "dotnet":
        return ["dotnet", str(exe.with_suffix(".dll") if suffix == ".exe" else exe), target]
    if runtime != "auto":
        raise ToolError(f"unknown MaxQuant runtime {runtime!r} (auto, mono, dotnet, none)")
    if suffix == ".dll":
        return ["dotnet", cmd[0], target]
    if suffix == ".exe" and os_name != "nt":
        version = maxquant_version(exe, Path(mqpar))
        if version is not None and version[:2] >= DOTNET_FROM:
            return ["dotnet", str(exe.with_suffix(".dll")), target]
        return ["mono", cmd[0], target]
    return [cmd[0], target]


def find_txt_dir(work_dir: Path) -> Path | None:
    """The ``combined/txt`` folder a run produced under ``work_dir`` (the shallowest), or None."""
    work_dir = Path(work_dir)
    direct = work_dir / "combined" / "txt"
    if direct.is_dir():
        return direct
    found = [p for p in work_dir.rglob("txt") if p.is_dir() and p.parent.name == "combined"]
    return min(found, key=lambda p: (len(p.parts), str(p))) if found else None
