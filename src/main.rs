//! The `ecommerce-api` binary: parse the command line, run it.

use std::process::ExitCode;

use clap::Parser;
use ecommerce_api::config::Cli;

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
