//! The `rtscore` binary: parses flags, sets up logging, and hands over to the library.

use clap::Parser;
use rtscore::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("RTSCORE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Run(args)) => rtscore::runtime::run(*args).await,
            Some(Command::Scenario(args)) => rtscore::cli::scenario::run(args).await,
            Some(Command::Plugin(args)) => rtscore::cli::plugin::run(args).await,
            Some(Command::Status(args)) => rtscore::cli::status::run(args).await,
            Some(Command::Token(args)) => rtscore::cli::token::run(args),
            Some(Command::Diff(args)) => rtscore::cli::diff::run(args),
            None => rtscore::runtime::run(cli.run).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
