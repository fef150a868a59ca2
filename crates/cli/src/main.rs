//! The `promlake` binary: config loading and subcommands. `anyhow` lives only here.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod bench;

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
    /// Check a config file: parse it, reject unknown fields, print the effective config.
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROMLAKE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
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
        Command::CheckConfig { file } => {
            let cfg = load_config(Some(&file))?;
            println!("{cfg:#?}");
            Ok(())
        }
    }
}
