"""The at-least-once loop: decode a stream in micro-batches, write each, acknowledge only what is durable.

    stage = StreamStage(engine)
    with MqttSource(url).start() as source:
        deliver(stage, source, RollingParquetSink("out/", engine), ack=source.ack,
                hold_limit=source.holdable(stage.max_rows))

A message is acknowledged (``ack(positions)``) only after the row it
became is durable in the sink: for a sink that makes rows durable as it
writes them (``durable_on_write``: JSON Lines flushed to stdout), after each
batch; for a rolling sink, after the file holding them is renamed into
place. If the process dies in between, the source delivers the message
again: nothing acknowledged is lost, a few rows may come twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .stage import StreamStage

__all__ = ["deliver"]


def deliver(
    stage: StreamStage,
    messages: Iterable[Any],
    sink: Any,
    *,
    ack: Callable[[list], Any] | None = None,
    on_errors: Callable[[list[dict]], Any] | None = None,
    hold_limit: int | None = None,
) -> None:
    """Run ``stage`` over ``messages`` into ``sink``, acknowledging each message once it is durable.

    ``sink`` has ``write(chunk)``, ``due()`` (its open rows should be made
    durable now), ``commit()`` (make them durable) and ``abort()`` (drop
    what is not durable). ``on_errors`` gets each batch's error records.
    ``hold_limit``: the most messages the source lets us hold unacknowledged
    (MQTT's packet ids); rows are committed early to stay below it. On an
    exception the open rows are dropped unacknowledged and it propagates.
    """
    pending: list = []  # positions of messages written but not yet durable

    def commit() -> None:
        sink.commit()
        if ack is not None and pending:
            ack(pending)
        pending.clear()

    try:
        for batch in stage.batches(messages):
            if batch.rows:
                sink.write(batch.chunk)
            if batch.errors and on_errors is not None:
                on_errors(batch.errors)
            pending.extend(batch.positions)
            if sink.due() or (hold_limit is not None and len(pending) + stage.max_rows > hold_limit):
                commit()
        commit()
    except BaseException:
        sink.abort()  # not acknowledged: the source sends those messages again
        raise
