"""The normalized output of the reader: the uplink and reception schemas every provider maps onto.

One row per uplink (``UPLINK_SCHEMA``) and one per uplink x gateway
(``RECEPTION_SCHEMA``); ``docs/schema.md`` describes each column and where
every provider's value comes from.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "TS",
    "PROVIDER_TYPE",
    "PROVIDER_NAMES",
    "PROVIDERS",
    "FIREFLY",
    "HELIUM",
    "TTS",
    "CHIRPSTACK",
    "UPLINK_SCHEMA",
    "RECEPTION_SCHEMA",
    "empty_uplinks",
    "empty_receptions",
]

TS = pa.timestamp("ns", "UTC")
PROVIDER_TYPE = pa.dictionary(pa.int32(), pa.string())
PROVIDER_NAMES = ("firefly", "helium", "tts", "chirpstack")  # the provider column's dictionary, in this order
PROVIDERS = pa.array(PROVIDER_NAMES, pa.string())
FIREFLY, HELIUM, TTS, CHIRPSTACK = 0, 1, 2, 3

UPLINK_SCHEMA = pa.schema(
    [
        ("provider", PROVIDER_TYPE),
        ("packet_id", pa.string()),
        ("dev_eui", pa.string()),
        ("device_id", pa.string()),
        ("devaddr", pa.string()),
        ("received_at", TS),
        ("fcnt", pa.int64()),
        ("port", pa.int64()),
        ("confirmed", pa.bool_()),
        ("payload", pa.binary()),
        ("payload_text", pa.string()),  # the payload as received, kept only where it could not be decoded
        ("frequency_mhz", pa.float64()),
        ("spreading_factor", pa.int64()),
        ("bandwidth_khz", pa.float64()),
        ("coding_rate", pa.string()),
        ("rssi", pa.float64()),
        ("snr", pa.float64()),
        ("gateway_id", pa.string()),
        ("gateway_count", pa.int64()),
        ("line", pa.int64()),
        ("error", pa.string()),
        ("warnings", pa.string()),  # what the reader coerced or dropped ("; " between several)
    ]
)

RECEPTION_SCHEMA = pa.schema(
    [
        ("packet_index", pa.int64()),
        ("gateway_id", pa.string()),
        ("gateway_name", pa.string()),
        ("rssi", pa.float64()),
        ("snr", pa.float64()),
        ("time", TS),
        ("tmst", pa.int64()),
        ("channel", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("frequency_mhz", pa.float64()),
    ]
)


def empty_uplinks() -> pa.Table:
    return UPLINK_SCHEMA.empty_table()


def empty_receptions() -> pa.Table:
    return RECEPTION_SCHEMA.empty_table()
