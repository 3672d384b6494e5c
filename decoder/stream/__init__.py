"""Live messages -> micro-batches of Arrow: the stage (``stage``), its reader thread (``handoff``),
the write-then-acknowledge loop (``deliver``), sources (``mqtt``, ``firefly_queue``), and the
webhook server (``http``, ``decoder serve``) over its write-ahead log (``wal``)."""

from __future__ import annotations

from .deliver import deliver
from .stage import Message, MicroBatch, StreamStage, StreamStats

__all__ = ["StreamStage", "MicroBatch", "StreamStats", "Message", "deliver"]
