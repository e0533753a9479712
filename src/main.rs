//! The `ecommerce-api` binary: parse the command line, run it.

use std::process::ExitCode;

use clap::Parser;
use ecommerce_api::config::Cli;

/// mimalloc instead of the system allocator: under load a request's many
/// small allocations spent about a third of the service's CPU time in
/// glibc's malloc and free (measured with `perf`, see the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match ecommerce_api::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "stopped");
            eprintln!("ecommerce-api: {err:#}");
            ExitCode::FAILURE
        }
    }
}
