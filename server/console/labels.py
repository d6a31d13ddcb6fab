"""Enrolment labels: each new code as a QR code (segno) with the device's name, site and member, laid out by the
labels page as an A4 sheet to print and stick on the radios.

A code is shown once (only its hash is stored), so labels are made in the answer that created the codes: adding
devices, importing a CSV, or issuing new codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import segno
from markupsafe import Markup, escape
from sqlalchemy import select

from playlists.enrol_label import label_text
from server.devices import registry as devices
from server.devices.models import Device
from server.org.models import Site


@dataclass(frozen=True)
class Label:
    """One printed label."""

    uid: str
    name: str
    site: str
    member: Optional[str]
    code: str
    payload: str
    qr: Markup


def qr_svg(payload: str, alt: str) -> Markup:
    """PAYLOAD as an inline SVG QR code (medium error correction, so a scuffed label still scans), named ALT."""
    svg = segno.make(payload, error="m").svg_inline(scale=3, border=4, svgclass="qr")
    return Markup(svg.replace("<svg ", f'<svg role="img" aria-label="{escape(alt)}" ', 1))


def make_labels(services, session, new: Iterable[devices.NewDevice]) -> list[Label]:
    """A label for each device just given a code."""
    server = services.settings.web_url
    out = []
    for n in new:
        device = session.scalar(select(Device).where(Device.uid == n.uid))
        site = session.get(Site, device.site_id) if device is not None else None
        member = devices.member_on(device, services.today()) if device is not None and device.kind == "radio" \
            else None
        payload = label_text(server, n.code)
        out.append(Label(n.uid, n.name, f"{site.name} ({site.code})" if site else n.site,
                         f"{member.name} ({member.member_no})" if member else None, n.code, payload,
                         qr_svg(payload, f"QR {n.name} {n.code}")))
    return out
