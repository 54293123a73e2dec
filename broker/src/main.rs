//! The `tributary` binary: parses flags, loads the configuration, sets up logging
//! and runs the broker. Everything else lives in the library.

use std::path::PathBuf;

use clap::Parser;
use tributary_config::Sources;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A stream storage broker that speaks the Kafka wire protocol.
#[derive(Debug, Parser)]
#[command(name = "tributary", version)]
struct Cli {
    /// TOML configuration file (see tributary.toml for every key).
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka listener, HOST:PORT [default: 127.0.0.1:9092].
    #[arg(long)]
    listen: Option<String>,
    /// HOST:PORT given to clients in Metadata [default: the listen address].
    #[arg(long)]
    advertised_listener: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long)]
    data_dir: Option<String>,
    /// HTTP listener for /metrics and /health, HOST:PORT [default: 127.0.0.1:9644].
    #[arg(long)]
    http_listen: Option<String>,
    /// Check the configuration (file, environment, flags) and exit: 0 when it is
    /// accepted, 2 with every problem named otherwise.
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let text = match &cli.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some((path.as_path(), t)),
            Err(e) => {
                eprintln!("tributary: cannot read config file {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        },
        None => None,
    };
    let flags: Vec<(&'static str, String)> = [
        ("listen", cli.listen.clone()),
        ("advertised_listener", cli.advertised_listener.clone()),
        ("data_dir", cli.data_dir.clone()),
        ("http_listen", cli.http_listen.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let config = match tributary_config::load(Sources { file: text, env: std::env::vars().collect(), flags }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tributary: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration accepted");
        return std::process::ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tributary").build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tributary: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tributary_broker::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tributary: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
