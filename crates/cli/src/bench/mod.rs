//! `promlake bench`: workloads and side-by-side measurements against peer systems.

pub mod compare;
pub mod ingest;
pub mod peers;
pub mod promql;
pub mod query;
pub mod storage;
pub mod workload;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// promlake beside Prometheus and VictoriaMetrics, one after the other, under the identical
    /// workload: a table, JSON and PNG plots in --out.
    Compare(compare::CompareArgs),
    /// Bytes on disk per sample, RSS per series and append throughput, beside VictoriaMetrics.
    Storage(storage::StorageArgs),
    /// Remote-write load generator; `--compare` runs it against promlake and VictoriaMetrics.
    Ingest(ingest::IngestArgs),
    /// Dashboard query latency; `--compare` runs it against promlake and Prometheus.
    Query(query::QueryArgs),
    /// PromQL query latency and RSS growth over memory and real storage, by worker count.
    Promql(promql::PromqlArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Compare(a) => compare::run(&a).map(|_| ()),
        BenchCommand::Storage(a) => storage::run(&a).map(|_| ()),
        BenchCommand::Ingest(a) => ingest::run(&a).map(|_| ()),
        BenchCommand::Query(a) => query::run(&a).map(|_| ()),
        BenchCommand::Promql(a) => promql::run(&a).map(|_| ()),
    }
}
