//! The `rtscore` binary: parses flags, sets up logging, and hands over to the library.

use clap::Parser;
mod cli;

use cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: per-event state (recent items, spilled lists, encoded
/// profiles) is many small blocks, and side by side it cut the CPU time of `rtscore run --job
/// all` by about 14% (docs/benchmarks.md, "`--job all`: shared buffers and the allocator"), for
/// a resident size 64-100 MB larger.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("RTSCORE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs redirected to a file or a collector stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // At least four workers, whatever the cores: the pipeline's turns and a source's batch
    // building are long CPU-bound polls, and the spare workers keep the HTTP server, the config
    // watcher and the sinks answering meanwhile (docs/operations.md, "Control under load").
    // With --threads N, a worker more per extra pipeline, so pipelines never queue for a
    // worker behind each other.
    let pipelines = match &cli.command {
        Some(Command::Run(args)) => cli::run_args::Threads::upper_bound(args.threads),
        None => cli::run_args::Threads::upper_bound(cli.run.threads),
        _ => 1,
    };
    let workers = std::thread::available_parallelism().map_or(4, |n| n.get().max(4)) + pipelines - 1;
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Run(args)) => run(*args).await,
            Some(Command::Scenario(args)) => cli::scenario::run(args).await,
            Some(Command::Defaults(args)) => cli::defaults::run(args).await,
            Some(Command::Plugin(args)) => cli::plugin::run(args).await,
            Some(Command::Status(args)) => cli::status::run(args).await,
            Some(Command::Token(args)) => cli::token::run(args),
            Some(Command::Diff(args)) => cli::diff::run(args),
            None => run(cli.run).await,
        }
    });
    // A source blocked in a read (stdin that stays open, say) must not hold the exit: what had
    // to be written was written before `block_on` returned.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `rtscore run`: the flags become settings (or a clear error), then the runtime runs until its
/// input ends or SIGTERM / Ctrl-C.
async fn run(args: cli::RunArgs) -> anyhow::Result<()> {
    args.docs.install()?;
    let settings = rtscore::settings::Settings::try_from(args)?;
    rtscore::runtime::run(settings, rtscore::runtime::Shutdown::on_signals()).await
}
