"""Whose organisation a caller may see and change: the one copy of the township rule.

County staff (admin, media, viewer) act on the whole county. A township operator acts only on their township: its
sites, the devices at those sites, the members registered at those sites, and the class sessions held there. A
write is allowed only when its target AND every object it refers to (a device's new site, a radio's new holder, a
group, an attendee) are inside the scope, because a write that merely *mentions* another township's member or site
still changes that township's records (an attendee counts in their township's report; a device moved to another
site is managed from then on by that township).

Services take a ``Scope`` and ask it; the API passes the actor's (``Actor.scope``), the command line ``COUNTY``.
So the web API, the command line and the console that comes later apply the same rule. Refusals are 403 with the
stable code ``other_township``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.devices.models import Device
from server.errors import DomainError, Forbidden
from server.i18n import _l
from server.org.models import Group, Member, Site, Township


@dataclass(frozen=True)
class Scope:
    """The township a caller is limited to (its code), or None for the whole county."""

    township: Optional[str] = None

    @property
    def is_county(self) -> bool:
        """Whether nothing is out of reach."""
        return self.township is None

    def covers(self, township_code: Optional[str]) -> bool:
        """Whether an object of township TOWNSHIP_CODE is inside the scope."""
        return self.township is None or township_code == self.township

    def refuse(self, what: str) -> DomainError:
        """The error for WHAT (e.g. "Site hs-01") lying outside the scope."""
        return Forbidden("other_township",
                         _l("{what} belongs to another township; an operator of {township} sees and changes only "
                            "{township}'s sites, devices, members and classes.",
                            what=what, township=self.township))

    def township_filter(self, requested: Optional[str]) -> Optional[str]:
        """The township a listing or report is limited to: staff choose (None: all); an operator always gets their
        own, and asking for another township is refused rather than silently answered with their own."""
        if self.township is None:
            return requested or None
        if requested and requested != self.township:
            raise self.refuse(f"Township {requested}")
        return self.township

    def check_township(self, township: Township, what: Optional[str] = None) -> Township:
        """TOWNSHIP, or a 403 when it is not the scope's."""
        if not self.covers(township.code):
            raise self.refuse(what or f"Township {township.code}")
        return township

    def check_site(self, site: Site, what: Optional[str] = None) -> Site:
        """SITE, or a 403 when it lies in another township."""
        if not self.covers(site.township.code):
            raise self.refuse(what or f"Site {site.code}")
        return site

    def check_device(self, device: Device) -> Device:
        """DEVICE, or a 403 when it stands at another township's site."""
        self.check_site(device.site, f"Device {device.uid}")
        return device

    def check_member(self, session: Session, member: Member) -> Member:
        """MEMBER, or a 403 when they are registered at another township's site."""
        if self.township is not None:
            self.check_site(session.get(Site, member.site_id), f"Member {member.member_no}")
        return member

    def check_site_id(self, session: Session, site_id: int, what: str) -> None:
        """A 403 when the site with SITE_ID (of WHAT, e.g. a class session) lies in another township."""
        if self.township is not None:
            self.check_site(session.get(Site, site_id), what)

    def check_group(self, session: Session, group: Group) -> Group:
        """GROUP, or a 403 when it belongs to another township. County-wide groups (a sea branch, retirees) have no
        township and are open to every operator: a township's radios join them."""
        if self.township is not None and group.township_id is not None:
            self.check_township(session.get(Township, group.township_id), f"Group {group.key}")
        return group


COUNTY = Scope(None)


def find_township(session: Session, code_or_name: str) -> Township:
    """The township with this code, or else with this name (青山镇); ValueError naming the choices when there is
    none, or when two townships share the name."""
    text = code_or_name.strip()
    township = session.scalar(select(Township).where(Township.code == text))
    if township is not None:
        return township
    named = session.scalars(select(Township).where(Township.name == text)).all()
    if len(named) == 1:
        return named[0]
    known = ", ".join(f"{t.code} ({t.name})" for t in session.scalars(select(Township).order_by(Township.code)))
    if named:
        raise ValueError(_l("{count} townships are named {name!r}; give the code of one: {known}", count=len(named),
                            name=text, known=known))
    raise ValueError(_l("there is no township {name!r}; give the code or the name of one of: {known} "
                        "(import the sites first: 'lessoncast org import sites.csv')", name=text,
                        known=known or _l("none yet")))
