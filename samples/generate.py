#!/usr/bin/env python3
"""Write N realistic LoRaWAN uplinks of Firefly, Helium, The Things Stack and ChirpStack as JSON Lines.

    python samples/generate.py -n 1000000 -o packets.jsonl [--seed S]
        [--mix firefly=0.5,helium_event=0.25,helium_body=0.25]
        [--group "Test Device Class:9:1" ...] [--devices 1000]
        [--devices-out devices.json] [--device-ids-out device_ids.json]

The shapes are the ones printed in the API references (see the seeds):

- ``firefly``: a Firefly "List Packets" item (hex payload, ``gwrx`` list).
- ``helium_event``: a Helium device event, category ``uplink``, with one
  ``data.hotspot`` and float32 radio values printed at double precision.
- ``helium_body``: a Helium HTTP integration body (``dev_eui``,
  ``hotspots`` list, base64 payload, ``reported_at`` as epoch ms int).
- ``helium_integration``: a Helium integration event whose
  ``data.req.body`` is such a body.
- ``helium_downlink``: a Helium event that is not an uplink (skipped by
  the reader; useful to check the counts).
- ``tts``: a The Things Stack ``ApplicationUp`` with an ``uplink_message``
  (webhook / MQTT / storage shape: ``end_device_ids``, ``correlation_ids``,
  base64 ``frm_payload``, ``rx_metadata`` list, frequency in Hz as a string).
- ``chirpstack``: a ChirpStack v4 integration ``up`` event
  (``deduplicationId``, ``deviceInfo``, base64 ``data``, ``rxInfo`` list,
  ``txInfo`` with frequency and bandwidth in Hz, ``codeRate`` ``CR_4_5``).

Devices come from a deterministic set that does not depend on ``--seed``:
group ``g`` (0-based, in ``--group`` order), device ``i`` has the EUI
``70B3D57ED0{g:01X}{i:05X}`` and the Helium device id
``00000000-0000-4000-8{g:03X}-{i:012X}``. ``--devices-out`` writes the
``{dev_eui: class_name}`` map that was used; ``--device-ids-out`` writes
``{device_id: class_name}`` (Helium device events carry only the device id,
not the EUI).

A group is ``NAME:SIZE[:WEIGHT]``: a class name, a payload size in bytes
and the share of devices. The three sample classes of ``samples/classes/``
get realistic payloads in their own layouts, which fix the size and the
port (SIZE is then ignored, except that the seed class pads its 9 bytes
with random ones up to a larger SIZE and is all random bytes below 9);
any other NAME gets SIZE random bytes:

- "Test Device Class" (battery u8, latitude s24, longitude s24, altitude
  s16, big-endian: 9 bytes): GPS fixes.
- "Room Climate Sensor" (status u8, temperature s16 in 0.01 degC,
  humidity u8 in 0.5 %, battery u16 in mV, big-endian: 6 bytes): 15-30
  degC, 25-70 %, 2.9-3.6 V; the low-battery flag (bit 7) below 3.0 V.
- "Multi Sensor" (little-endian): on port 3, 80 % measurements (header
  with bit 7 clear, float32 temperature 15-30 degC, u16 CO2 400-2000 ppm,
  u24 pressure in Pa 950-1050 hPa: 10 bytes) and 15 % status reports
  (header with bit 7 set, flags tamper/moving in bits 7/6, battery u8
  1-254: 3 bytes); on port 4, 5 % configuration reports (header, u16
  interval in s, s16 calibration in 0.01 degC: 5 bytes). The header's low
  7 bits are the frame counter's.

Other groups use port 1 + g (on Firefly, 2 for g = 0).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import struct
import sys
import time
from dataclasses import dataclass

import numpy as np

DEFAULT_MIX = "firefly=0.5,helium_event=0.25,helium_body=0.25"
DEFAULT_GROUP = "Test Device Class:9:1"
SHAPES = ("firefly", "helium_event", "helium_body", "helium_integration", "helium_downlink", "tts", "chirpstack")

# EU868 channels for Firefly, US915 sub-band 2 for Helium.
FIREFLY_FREQS = (868.1, 868.3, 868.5, 867.1, 867.3, 867.5, 867.7, 867.9)
HELIUM_FREQS = (903.9, 904.1, 904.3, 904.5, 904.7, 904.9, 905.1, 905.3)
BASE_MS = 1632352528562  # the seed's reported_at
BASE58 = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ123456789"  # Helium hotspot ids


def _event_id(rng: random.Random) -> str:
    """A random UUID v4 in text, as Helium prints event ids."""
    return (
        f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-"
        f"a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}"
    )


_CLIMATE = struct.Struct(">BhBH")
_MEASUREMENT = struct.Struct("<BfHI")  # the u32 pressure's high byte (always 0) is cut off: 10 bytes
_STATUS = struct.Struct("<BBB")
_CONFIG = struct.Struct("<BHh")
_INTERVALS = (60, 300, 300, 600, 600, 900, 1800, 3600)


@dataclass(frozen=True)
class Group:
    name: str
    size: int
    weight: float


def device_eui(g: int, i: int) -> str:
    return f"70B3D57ED0{g:01X}{i:05X}"


def device_uuid(g: int, i: int) -> str:
    return f"00000000-0000-4000-8{g:03X}-{i:012X}"


def device_addr(g: int, i: int) -> str:
    return f"{0x26000000 + (g << 20) + i:08x}"


def f32(x: float) -> str:
    """A float32 value printed at double precision, as Helium does."""
    return repr(float(np.float32(x)))


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in SHAPES:
            raise SystemExit(f"unknown shape {name!r} in --mix (known: {', '.join(SHAPES)})")
        mix[name] = float(weight or 1)
    return mix


def parse_group(text: str) -> Group:
    parts = text.rsplit(":", 2)
    if len(parts) == 2:
        parts.append("1")
    if len(parts) != 3:
        raise SystemExit(f"--group must be NAME:SIZE[:WEIGHT], got {text!r}")
    name, size, weight = parts
    return Group(name, int(size), float(weight))


class Generator:
    def __init__(self, groups: list[Group], devices: int, mix: dict[str, float], seed: int):
        self.rng = random.Random(seed)
        self.groups = groups
        total_w = sum(g.weight for g in groups)
        # Deterministic device set: each group gets its share of `devices`.
        self.devices: list[tuple[int, int]] = []
        for gi, g in enumerate(groups):
            count = max(1, round(devices * g.weight / total_w))
            self.devices.extend((gi, i) for i in range(count))
        self.fcnt = [self.rng.randrange(0, 30000) for _ in self.devices]
        self.gateways = [f"{0x00000024B080E000 + k:016X}" for k in range(64)]
        self.hotspots = [
            (
                "11" + "".join(self.rng.choice(BASE58) for _ in range(49)),
                "-".join(
                    self.rng.choice(("brave", "tiny", "quiet", "sunny", "wild", "shiny", "mellow", "fierce"))
                    for _ in range(3)
                ),
                round(self.rng.uniform(30, 48), 6),
                round(self.rng.uniform(-122, -71), 6),
            )
            for _ in range(64)
        ]
        # Per group, the payload maker of its class (None: random bytes of the group's size).
        self.makers = [self._LAYOUTS.get(g.name) for g in groups]
        self.shapes = list(mix)
        self.weights = [mix[s] for s in self.shapes]
        self.t_ms = BASE_MS

    # -- payloads ----------------------------------------------------------
    def payload(self, gi: int, fcnt: int, port: int) -> tuple[int, bytes]:
        """(port, payload bytes) of an uplink of group ``gi``; ``port`` is the group's usual one."""
        make = self.makers[gi]
        if make is None:
            return port, self.rng.randbytes(self.groups[gi].size)
        return make(self, gi, fcnt, port)

    def _gps(self, gi: int, fcnt: int, port: int) -> tuple[int, bytes]:
        g = self.groups[gi]
        rng = self.rng
        if g.size < 9:  # too short for a fix (as before: random bytes)
            return port, rng.randbytes(g.size)
        battery = rng.randrange(1, 255)
        lat = int(rng.uniform(-90, 90) / 90 * (1 << 23))
        lon = int(rng.uniform(-180, 180) / 180 * (1 << 23))
        lat = max(-(1 << 23), min((1 << 23) - 1, lat))
        lon = max(-(1 << 23), min((1 << 23) - 1, lon))
        alt = rng.randrange(-100, 3000)
        body = (
            bytes([battery])
            + lat.to_bytes(3, "big", signed=True)
            + lon.to_bytes(3, "big", signed=True)
            + struct.pack(">h", alt)
        )
        return port, body + rng.randbytes(g.size - 9)

    def _climate(self, gi: int, fcnt: int, port: int) -> tuple[int, bytes]:
        rng = self.rng
        battery = rng.randrange(2900, 3601)  # mV
        status = (
            (0x80 if battery < 3000 else 0)
            | (0x40 if rng.random() < 0.02 else 0)
            | (0x01 if rng.random() < 0.15 else 0)
        )  # low battery, alarm, window open
        return port, _CLIMATE.pack(status, rng.randrange(1500, 3001), rng.randrange(50, 141), battery)

    def _multi(self, gi: int, fcnt: int, port: int) -> tuple[int, bytes]:
        rng = self.rng
        seq = fcnt & 0x7F
        r = rng.random()
        if r < 0.80:
            temp = rng.randrange(1500, 3001) / 100
            return 3, _MEASUREMENT.pack(seq, temp, rng.randrange(400, 2001), rng.randrange(95000, 105001))[:10]
        if r < 0.95:
            flags = (0x80 if rng.random() < 0.02 else 0) | (0x40 if rng.random() < 0.1 else 0)  # tamper, moving
            return 3, _STATUS.pack(0x80 | seq, flags, rng.randrange(1, 255))
        return 4, _CONFIG.pack(seq, rng.choice(_INTERVALS), rng.randrange(-200, 201))

    _LAYOUTS = {"Test Device Class": _gps, "Room Climate Sensor": _climate, "Multi Sensor": _multi}

    def next_device(self) -> tuple[int, int, int]:
        k = self.rng.randrange(len(self.devices))
        self.fcnt[k] += 1
        gi, i = self.devices[k]
        return gi, i, self.fcnt[k]

    def tick(self) -> int:
        self.t_ms += self.rng.randrange(1, 400)
        return self.t_ms

    # -- shapes --------------------------------------------------------------
    def firefly(self) -> str:
        rng = self.rng
        gi, i, fcnt = self.next_device()
        t = self.tick()
        sec, ms = divmod(t, 1000)
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        freq = rng.choice(FIREFLY_FREQS)
        sf = rng.choice((7, 7, 7, 8, 9, 10, 11, 12))
        n_gw = 1 + min(3, int(rng.expovariate(1.2)))
        gws = []
        for gw in rng.sample(self.gateways, n_gw):
            us = ms * 1000 + rng.randrange(0, 1000)
            gws.append(
                f'{{"tmst":{rng.randrange(0, 1 << 32)},"time":"{base}.{us:06d}Z",'
                f'"rssi":{rng.randrange(-120, -30)},"lsnr":{rng.randrange(-200, 130) / 10},"gweui":"{gw}"}}'
            )
        port, body = self.payload(gi, fcnt, 2 if gi == 0 else 1 + gi)
        payload = body.hex().upper()
        mtype = "confirmed_data_up" if rng.random() < 0.1 else "unconfirmed_data_up"
        uid = (
            f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4d7e-{rng.getrandbits(16):04x}-"
            f"{rng.getrandbits(48):012x}"
        )
        return (
            f'{{"ack":false,"bandwidth":125,"codr":"4/5","device_eui":"{device_eui(gi, i)}","fopts":"",'
            f'"fcnt":{fcnt},"freq":{freq},"gwrx":[{",".join(gws)}],"modu":"LORA","mtype":"{mtype}",'
            f'"payload_encrypted":false,"payload":"{payload}","port":{port},'
            f'"received_at":"{base}","size":{len(payload) // 2 + 13},"spreading_factor":{sf},"uid":"{uid}"}}'
        )

    def _hotspot(self, with_time: int | None) -> str:
        rng = self.rng
        hid, name, lat, lon = rng.choice(self.hotspots)
        sf = rng.choice((7, 8, 9, 9, 10))
        extra = f'"hold_time":{rng.randrange(0, 400)},' if with_time is not None else ""
        tail = f',"reported_at":{with_time},"status":"success"' if with_time is not None else ""
        return (
            f'{{"channel":{rng.randrange(0, 16)},"frequency":{f32(rng.choice(HELIUM_FREQS))},{extra}'
            f'"id":"{hid}","lat":{lat},"long":{lon},"name":"{name}",'
            f'"rssi":{float(rng.randrange(-125, -40))},"snr":{f32(rng.randrange(-200, 150) / 10)},'
            f'"spreading":"SF{sf}BW125"{tail}}}'
        )

    def _body(self) -> str:
        rng = self.rng
        gi, i, fcnt = self.next_device()
        t = self.tick()
        n = 1 + min(4, int(rng.expovariate(0.9)))
        hotspots = ",".join(self._hotspot(t - rng.randrange(0, 50)) for _ in range(n))
        port, body = self.payload(gi, fcnt, 1 + gi)
        payload = base64.b64encode(body).decode()
        uuid = device_uuid(gi, i)
        return (
            f'{{"app_eui":"70B3D57ED0000000","dev_eui":"{device_eui(gi, i)}","devaddr":"{device_addr(gi, i)}",'
            f'"fcnt":{fcnt},"hotspots":[{hotspots}],"id":"{uuid}","metadata":{{"adr_allowed":false,'
            f'"cf_list_enabled":false,"multi_buy":1,"organization_id":"8d6b44ba-7d70-4d4b-8c69-5b1c3e8b1d4a"}},'
            f'"name":"device-{gi}-{i}","payload":"{payload}","payload_size":{len(payload)},"port":{port},'
            f'"reported_at":{t},"uuid":"{uuid}"}}'
        )

    def helium_body(self) -> str:
        return self._body()

    def helium_integration(self) -> str:
        rng = self.rng
        body = self._body()
        uuid = json.loads(body)["id"]
        eid = _event_id(rng)
        return (
            f'{{"category":"uplink","data":{{"integration":{{"id":"2b7c5f42-6f5e-4d8e-9a47-3a3b5c1e2f10",'
            f'"name":"azure-int","status":"success"}},"req":{{"body":{body},"qos":0}}}},'
            f'"description":"Request sent to <<\\"azure-int\\">>","device_id":"{uuid}","frame_down":null,'
            f'"frame_up":null,"id":"{eid}","organization_id":"8d6b44ba-7d70-4d4b-8c69-5b1c3e8b1d4a",'
            f'"reported_at":"{self.tick()}","router_uuid":"5c6b6b1e-2d1c-4f4e-9b0a-0c1d2e3f4a5b",'
            f'"sub_category":"uplink_integration_req"}}'
        )

    def helium_event(self, downlink: bool = False) -> str:
        rng = self.rng
        gi, i, fcnt = self.next_device()
        t = self.tick()
        confirmed = rng.random() < 0.2
        port, body = self.payload(gi, fcnt, 1 + gi)
        payload = base64.b64encode(body).decode()
        eid = _event_id(rng)
        if downlink:
            cat, sub, desc = "downlink", "downlink_ack", "Ack sent"
        elif confirmed:
            cat, sub, desc = "uplink", "uplink_confirmed", "Confirmed data up received"
        else:
            cat, sub, desc = "uplink", "uplink_unconfirmed", "Unconfirmed data up received"
        return (
            f'{{"category":"{cat}","data":{{"dc":{{"balance":{rng.randrange(10**6, 10**7)},"nonce":2,"used":1}},'
            f'"devaddr":"{device_addr(gi, i)}","fcnt":{fcnt},"hold_time":{rng.randrange(0, 400)},'
            f'"hotspot":{self._hotspot(None)},"mac":[],"payload":"{payload}",'
            f'"payload_size":{len(payload)},"port":{port}}},"description":"{desc}",'
            f'"device_id":"{device_uuid(gi, i)}","frame_down":null,"frame_up":{fcnt},"id":"{eid}",'
            f'"organization_id":"8d6b44ba-7d70-4d4b-8c69-5b1c3e8b1d4a","reported_at":"{t}",'
            f'"router_uuid":"5c6b6b1e-2d1c-4f4e-9b0a-0c1d2e3f4a5b","sub_category":"{sub}"}}'
        )

    def helium_downlink(self) -> str:
        return self.helium_event(downlink=True)

    def _lorawan_uplink(self):
        """(group, device, fcnt, time ms, RFC 3339 time, port, payload base64, frequency Hz, SF, gateways)."""
        rng = self.rng
        gi, i, fcnt = self.next_device()
        t = self.tick()
        sec, ms = divmod(t, 1000)
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}{rng.randrange(0, 10**6):06d}Z"
        port, body = self.payload(gi, fcnt, 1 + gi)
        hz = int(round(rng.choice(FIREFLY_FREQS) * 1e6))
        sf = rng.choice((7, 7, 8, 9, 10, 11, 12))
        gws = rng.sample(self.gateways, 1 + min(3, int(rng.expovariate(1.2))))
        return gi, i, fcnt, t, when, port, base64.b64encode(body).decode(), hz, sf, gws

    def tts(self) -> str:
        rng = self.rng
        gi, i, fcnt, t, when, port, payload, hz, sf, gws = self._lorawan_uplink()
        rx = ",".join(
            f'{{"gateway_ids":{{"gateway_id":"eui-{gw.lower()}","eui":"{gw}"}},"time":"{when}",'
            f'"timestamp":{rng.randrange(0, 1 << 32)},"rssi":{(r := rng.randrange(-120, -30))},'
            f'"channel_rssi":{r},"snr":{rng.randrange(-200, 130) / 10},"channel_index":{rng.randrange(0, 8)}}}'
            for gw in gws
        )
        ulid = "".join(rng.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(26))
        return (
            f'{{"end_device_ids":{{"device_id":"device-{gi}-{i}","application_ids":{{"application_id":"sample-app"}},'
            f'"dev_eui":"{device_eui(gi, i)}","dev_addr":"{device_addr(gi, i)}"}},'
            f'"correlation_ids":["as:up:{ulid}","gs:uplink:{ulid[::-1]}"],"received_at":"{when}",'
            f'"uplink_message":{{"f_port":{port},"f_cnt":{fcnt},"frm_payload":"{payload}","rx_metadata":[{rx}],'
            f'"settings":{{"data_rate":{{"lora":{{"bandwidth":125000,"spreading_factor":{sf},'
            f'"coding_rate":"4/5"}}}},"frequency":"{hz}"}},"received_at":"{when}"}}}}'
        )

    def chirpstack(self) -> str:
        rng = self.rng
        gi, i, fcnt, t, when, port, payload, hz, sf, gws = self._lorawan_uplink()
        rx = ",".join(
            f'{{"gatewayId":"{gw.lower()}","uplinkId":{rng.randrange(0, 1 << 32)},"gwTime":"{when}",'
            f'"rssi":{rng.randrange(-120, -30)},"snr":{rng.randrange(-200, 130) / 10},"channel":{rng.randrange(0, 8)},'
            f'"crcStatus":"CRC_OK"}}'
            for gw in gws
        )
        dedup = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-" + (
            f"{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}"
        )
        return (
            f'{{"deduplicationId":"{dedup}","time":"{when}","deviceInfo":{{"tenantName":"ChirpStack",'
            f'"applicationName":"sample-app","deviceName":"device-{gi}-{i}","devEui":"{device_eui(gi, i).lower()}"}},'
            f'"devAddr":"{device_addr(gi, i).lower()}","dr":{12 - sf},"fCnt":{fcnt},"fPort":{port},'
            f'"data":"{payload}","rxInfo":[{rx}],"txInfo":{{"frequency":{hz},"modulation":{{"lora":'
            f'{{"bandwidth":125000,"spreadingFactor":{sf},"codeRate":"CR_4_5"}}}}}}}}'
        )

    def lines(self, n: int):
        makers = {s: getattr(self, s) for s in self.shapes}
        batch = 4096
        while n > 0:
            k = min(batch, n)
            for shape in self.rng.choices(self.shapes, self.weights, k=k):
                yield makers[shape]()
            n -= k


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="number of lines to write")
    ap.add_argument("-o", "--output", default="-", help="output file ('-' for stdout; .gz compresses)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"shape weights (default {DEFAULT_MIX})")
    ap.add_argument(
        "--group",
        action="append",
        help=f"NAME:SIZE[:WEIGHT], repeatable (default {DEFAULT_GROUP!r}): devices of class NAME, "
        "SIZE random payload bytes for an unknown NAME (the sample classes Test Device Class, "
        "Room Climate Sensor and Multi Sensor get realistic payloads whose layout fixes size and "
        "port, so SIZE does not matter for the last two; Test Device Class pads its 9 bytes with "
        "random ones up to SIZE, and is all random bytes below 9)",
    )
    ap.add_argument("--devices", type=int, default=1000, help="number of devices over all groups")
    ap.add_argument("--devices-out", help="write the {dev_eui: class_name} map used")
    ap.add_argument("--device-ids-out", help="write the {helium device_id: class_name} map used")
    args = ap.parse_args(argv)

    groups = [parse_group(g) for g in (args.group or [DEFAULT_GROUP])]
    if len(groups) > 16:
        raise SystemExit("at most 16 groups")
    gen = Generator(groups, args.devices, parse_mix(args.mix), args.seed)

    if args.output == "-":
        out = sys.stdout.buffer
    elif args.output.endswith(".gz"):
        import gzip

        out = gzip.open(args.output, "wb", compresslevel=6)
    else:
        out = open(args.output, "wb")
    try:
        buf: list[str] = []
        for line in gen.lines(args.n):
            buf.append(line)
            if len(buf) >= 8192:
                out.write(("\n".join(buf) + "\n").encode())
                buf.clear()
        if buf:
            out.write(("\n".join(buf) + "\n").encode())
    finally:
        if out is not sys.stdout.buffer:
            out.close()

    if args.devices_out:
        with open(args.devices_out, "w") as f:
            json.dump({device_eui(gi, i): groups[gi].name for gi, i in gen.devices}, f, indent=0)
            f.write("\n")
    if args.device_ids_out:
        with open(args.device_ids_out, "w") as f:
            json.dump({device_uuid(gi, i): groups[gi].name for gi, i in gen.devices}, f, indent=0)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
