//! The `promlake` binary: config loading and subcommands. `anyhow` lives only here.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod promqltest;

#[derive(Parser)]
#[command(
    name = "promlake",
    version,
    about = "Prometheus-compatible, multi-tenant metrics database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the database: HTTP API, ingestion, storage. Zero config: data in ./data.
    Serve {
        /// TOML config file (see README for every field).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides the config file). Default ./data.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// HTTP listen address. Default 127.0.0.1:9393.
        #[arg(long)]
        http_listen: Option<String>,
        /// gRPC listen address. Default 127.0.0.1:9394.
        #[arg(long)]
        grpc_listen: Option<String>,
    },
    /// Benchmarks: load generators and side-by-side runs against Prometheus and VictoriaMetrics.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Export samples matching a selector as plain Parquet (labels, timestamp, value) from a
    /// running promlake, for DuckDB, pandas, Spark.
    Export {
        /// Series selector, e.g. 'up{job="node"}'. Repeat for several.
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        /// Start: RFC 3339 or Unix seconds. Default: everything.
        #[arg(long)]
        start: Option<String>,
        /// End: RFC 3339 or Unix seconds. Default: everything.
        #[arg(long)]
        end: Option<String>,
        /// Output file.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// promlake's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:9393")]
        url: String,
        /// Tenant (sent as X-Scope-OrgID).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Run PromQL test scripts (Prometheus' promqltest format) against the engine; ends with
    /// `N passed, N failed, N skipped` and fails if any case failed.
    Promqltest {
        /// .test files, or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Run against real storage (head plus flushed Parquet blocks) instead of memory.
        #[arg(long)]
        storage: bool,
        /// Known failures, one `<file>: <eval line> ## <reason>` per line.
        #[arg(long)]
        skip_file: Option<PathBuf>,
        /// Also list skipped cases.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Check a config file: parse it, reject unknown fields, check the block store URL's
    /// syntax (no connection is made), print the effective config.
    CheckConfig { file: PathBuf },
}

fn load_config(path: Option<&PathBuf>) -> Result<server::Config> {
    match path {
        None => Ok(server::Config::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            server::Config::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", p.display()))
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // reqwest (the S3 client, `export`, `bench`) uses rustls on ring, installed once here.
    storage::objstore::install_crypto_provider();
    // The script runner's output is its per-file lines: storage's info logs (a tenant opened,
    // a block written, for every file) would drown them.
    let default_level = match cli.command {
        Command::Promqltest { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROMLAKE_LOG")
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve { config, data_dir, http_listen, grpc_listen } => {
            let mut cfg = load_config(config.as_ref())?;
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(h) = http_listen {
                cfg.http_listen = h;
            }
            if let Some(g) = grpc_listen {
                cfg.grpc_listen = g;
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let running = server::start(cfg).await.map_err(anyhow::Error::msg)?;
                // Tests and scripts read the bound address from this line.
                eprintln!("promlake: listening on http://{}", running.http_addr);
                running.wait().await.map_err(anyhow::Error::msg)
            })?;
            tracing::info!("promlake stopped");
            Ok(())
        }
        Command::Bench(cmd) => bench::run(cmd),
        Command::Promqltest { files, storage, skip_file, verbose } => {
            let failed = promqltest::run(&files, storage, skip_file.as_deref(), verbose)?;
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Export { matchers, start, end, output, url, tenant } => {
            let mut form: Vec<(&str, &str)> =
                matchers.iter().map(|m| ("match[]", m.as_str())).collect();
            if let Some(s) = &start {
                form.push(("start", s));
            }
            if let Some(e) = &end {
                form.push(("end", e));
            }
            let client = reqwest::blocking::Client::builder().timeout(None).build()?;
            let mut req = client
                .post(format!("{}/api/v1/export/parquet", url.trim_end_matches('/')))
                .form(&form);
            if let Some(t) = &tenant {
                req = req.header("X-Scope-OrgID", t);
            }
            let resp = req.send().with_context(|| format!("connecting to {url}"))?;
            let status = resp.status();
            let body = resp.bytes()?;
            if !status.is_success() {
                anyhow::bail!("export failed ({status}): {}", String::from_utf8_lossy(&body));
            }
            std::fs::write(&output, &body)
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!("wrote {} bytes to {}", body.len(), output.display());
            Ok(())
        }
        Command::CheckConfig { file } => {
            let cfg = load_config(Some(&file))?;
            cfg.validate().map_err(|e| anyhow::anyhow!("config {}: {e}", file.display()))?;
            println!("{cfg:#?}");
            Ok(())
        }
    }
}
