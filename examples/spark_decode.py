"""Decode JSON Lines of uplinks into Parquet with Spark, as a batch job or a stream.

Batch (every input file once, into a new directory partitioned by class):

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit --master 'local[2]' examples/spark_decode.py \\
        samples/packets/firefly.jsonl samples/packets/helium.jsonl -o /tmp/decoded \\
        --classes samples/classes --devices samples/packets/devices.json --devices samples/packets/device_ids.json

Stream (files that land in a directory, each decoded once; the checkpoint
remembers which, so a restart goes on where the last run stopped):

    ... examples/spark_decode.py --stream incoming/ -o decoded/ --checkpoint checkpoint/ \\
        --classes samples/classes --class "Test Device Class" [--once]

On a cluster the same script runs unchanged; ship the packed virtual
environment with ``--archives`` (see docs/engines.md). Paths may be any
URL Spark reads (``s3a://``, ``abfss://``, ``gs://``); ``--classes`` and
``--devices`` are read by the driver only.
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from decoder import DecoderError
from decoder.spark import decode_lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="*", help="JSON Lines files or directories (plain or .gz)")
    ap.add_argument("-o", "--output", required=True, help="Parquet output directory (must not exist yet)")
    ap.add_argument("--classes", action="append", required=True, help="device-class file or directory")
    ap.add_argument("--devices", action="append", help="device bindings file (repeatable)")
    ap.add_argument("--class", dest="device_class", action="append", help="decode every device with this class")
    ap.add_argument("--stream", metavar="DIR", help="watch DIR for new files instead of reading INPUTS once")
    ap.add_argument("--checkpoint", help="checkpoint directory of the stream (required with --stream)")
    ap.add_argument("--once", action="store_true", help="stream: decode what is there now, then stop")
    args = ap.parse_args(argv)
    if bool(args.stream) == bool(args.inputs):
        ap.error("give either INPUTS or --stream DIR")
    if args.stream and not args.checkpoint:
        ap.error("--stream needs --checkpoint")
    return args


def summarize(spark: SparkSession, path: str) -> str:
    """Counts of what was written, read back from the Parquet output (not by decoding again)."""
    written = spark.read.parquet(path)
    row = written.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("error").isNull()).alias("decoded"),
        F.count_if(F.col("line_text").isNotNull()).alias("bad_lines"),
    ).first()
    failed = row["rows"] - row["decoded"] - row["bad_lines"]
    return (
        f"{row['rows']:,} rows: {row['decoded']:,} decoded, {failed:,} uplinks not decoded, "
        f"{row['bad_lines']:,} bad lines -> {path}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spark = SparkSession.builder.appName("decoder").config("spark.sql.session.timeZone", "UTC").getOrCreate()
    classes = args.classes if len(args.classes) > 1 else args.classes[0]
    try:
        if args.stream:
            lines = spark.readStream.text(args.stream)
            decoded = decode_lines(lines, classes=classes, devices=args.devices, device_class=args.device_class)
            writer = (
                decoded.writeStream.format("parquet")
                .partitionBy("device_class")
                .option("path", args.output)
                .option("checkpointLocation", args.checkpoint)
            )
            query = (writer.trigger(availableNow=True) if args.once else writer).start()
            query.awaitTermination()
        else:
            decoded = decode_lines(
                spark.read.text(args.inputs), classes=classes, devices=args.devices, device_class=args.device_class
            )
            decoded.write.partitionBy("device_class").parquet(args.output)  # fails if it exists
        print(summarize(spark, args.output))
    except DecoderError as err:
        print(f"spark_decode: error: {err}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
