//! Plain Parquet export for lake engines: one row per sample with the series' labels, so any
//! engine can read values without knowing promlake's block encoding. Schema in
//! docs/format/block.md ("Export").

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use model::Series;
use parquet::arrow::ArrowWriter;

use crate::error::Result;

const ROWS_PER_BATCH: usize = 65_536;

fn schema() -> Arc<Schema> {
    let map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()).finish();
    Arc::new(Schema::new(vec![
        Field::new("metric_name", DataType::Utf8, true),
        Field::new("labels", map.data_type().clone(), false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]))
}

struct Builders {
    names: StringBuilder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    ts: TimestampMillisecondBuilder,
    vs: Float64Builder,
    rows: usize,
}

impl Builders {
    fn new() -> Self {
        Builders {
            names: StringBuilder::new(),
            labels: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            ts: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            vs: Float64Builder::new(),
            rows: 0,
        }
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(self.names.finish()),
                Arc::new(self.labels.finish()),
                Arc::new(self.ts.finish()),
                Arc::new(self.vs.finish()),
            ],
        )?)
    }
}

/// Writes series (each with its samples) as plain Parquet into `out`; returns rows written.
pub fn write_parquet<W: std::io::Write + Send>(
    series: impl Iterator<Item = Result<Series>>,
    out: W,
) -> Result<u64> {
    let mut w = ArrowWriter::try_new(out, schema(), None)?;
    let mut b = Builders::new();
    let mut total = 0u64;
    for s in series {
        let s = s?;
        for smp in &s.samples {
            b.names.append_option(s.labels.metric_name());
            for l in s.labels.iter() {
                b.labels.keys().append_value(&*l.name);
                b.labels.values().append_value(&*l.value);
            }
            b.labels.append(true)?;
            b.ts.append_value(smp.t);
            b.vs.append_value(smp.v);
            b.rows += 1;
            total += 1;
            if b.rows >= ROWS_PER_BATCH {
                w.write(&b.finish()?)?;
            }
        }
    }
    if b.rows > 0 {
        w.write(&b.finish()?)?;
    }
    w.close()?;
    Ok(total)
}
