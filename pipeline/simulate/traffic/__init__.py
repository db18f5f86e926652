"""One simulated day of traffic, population by population, as columns of numpy arrays.

Each generator returns :class:`Events` (one entry per CDR, identities still as integers) and
draws from its own random stream, seeded by (seed, day, generator name), so a run is
deterministic and one population's parameters never shift another's randomness. Nothing here
loops over records: loops run over robocall operations, Wangiri and spoofing campaigns (tens a
day), never over calls.

A SIM's incoming calls are other parties' records with ``b_number`` = that SIM: call-backs,
customers calling businesses and calls between SIM-box siblings are real records.

Modules: ``events`` (the columnar records and their codes), ``day`` (a day's calendar, random
streams and shared draws), ``ingress`` (records by ingress), and the generators: ``people``
(people and call-backs), ``business``, ``sim_fraud`` (robocalls, SIM boxes), ``trunks`` (trunk
callers, Wangiri, spoofing).
"""

from __future__ import annotations

from pipeline.simulate.populations import BUSINESS_POPULATIONS, SIMBOX_POPULATIONS, World
from pipeline.simulate.traffic.business import gen_business
from pipeline.simulate.traffic.day import Day
from pipeline.simulate.traffic.events import Events
from pipeline.simulate.traffic.people import gen_people
from pipeline.simulate.traffic.sim_fraud import gen_robocalls, gen_simbox
from pipeline.simulate.traffic.trunks import gen_spoofing, gen_trunk_callers, gen_wangiri

#: generators of one day, in a fixed order (names seed their random streams)
GENERATORS: tuple[str, ...] = (
    "people",
    *BUSINESS_POPULATIONS,
    "spam_robocall",
    *SIMBOX_POPULATIONS,
    "trunk",
    "wangiri",
    "spoofing",
)


def generate(world: World, day: Day, name: str) -> Events:
    if name == "people":
        return gen_people(world, day)
    if name in BUSINESS_POPULATIONS:
        return gen_business(world, day, name)
    if name == "spam_robocall":
        return gen_robocalls(world, day)
    if name in SIMBOX_POPULATIONS:
        return gen_simbox(world, day, name)
    if name == "trunk":
        return gen_trunk_callers(world, day)
    if name == "wangiri":
        return gen_wangiri(world, day)
    if name == "spoofing":
        return gen_spoofing(world, day)
    raise ValueError(f"unknown generator {name!r}")
