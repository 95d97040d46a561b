"""Attachments never forwarded to agents, whatever a virus scanner says: programs and
documents that carry macros. Decided by the bytes (a renamed program is still a program)
and by the name (a script is plain text to a sniffer, and runs when double-clicked)."""

from __future__ import annotations

import io
import zipfile

from parsers.model import Attachment

__all__ = ["never_forward"]

# Names Windows, macOS or a desktop runs or opens as code on a double click.
_EXTENSIONS = frozenset("""
    exe com scr pif bat cmd msi msp mst dll cpl sys drv ocx jar js jse vbs vbe wsf wsh wsc
    hta ps1 psm1 psd1 ps1xml lnk url reg inf sct shb shs application gadget msc scf
    apk app dmg pkg deb rpm sh bash command run bin elf iso img vhd vhdx appx msix
    docm dotm xlsm xltm xlam xla ppam pptm potm ppsm sldm one chm
""".split())
# The first bytes of programs: PE (MZ), ELF, Mach-O (both ends, fat), a shell script.
_PROGRAM_MAGIC = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf",
                  b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"#!")
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the compound file of .doc, .xls, .ppt
_ZIP = b"PK\x03\x04"
# An OLE2 file with a VBA project names its storages in UTF-16: "_VBA_PROJECT", "Macros".
_OLE2_MACRO_NAMES = ("_VBA_PROJECT".encode("utf-16-le"), "Macros".encode("utf-16-le"),
                     "VBA".encode("utf-16-le") + b"\0\0")
_ZIP_MEMBERS_READ = 10_000  # a zip with more names than this is not looked into further


def never_forward(item: Attachment) -> str:
    """Why the attachment must not be forwarded ("" when it may be)."""
    head = item.payload[:8]
    if head.startswith(_PROGRAM_MAGIC):
        return "a program"
    extension = item.filename.rpartition(".")[2].lower() if "." in item.filename else ""
    if extension in _EXTENSIONS:
        return f"a .{extension} file"
    if head.startswith(_OLE2) and any(name in item.payload for name in _OLE2_MACRO_NAMES):
        return "a document with macros"
    if head.startswith(_ZIP) and _zip_has_macros(item.payload):
        return "a document with macros"
    return ""


def _zip_has_macros(payload: bytes) -> bool:
    """An Office Open XML file (or any zip) holding a VBA project or an OLE2 macro part."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for count, name in enumerate(archive.namelist()):
                if count >= _ZIP_MEMBERS_READ:
                    return True  # a zip built to hide a member: not forwarded
                lower = name.lower()
                if lower.endswith("vbaproject.bin") or lower.endswith((".exe", ".js", ".vbs")):
                    return True
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    return False
