//! `session-load --endpoints FILE ...`: loads a deployment for `--duration`, then writes a
//! markdown table and an SVG plot (and prints the table). Exit status 0 when the run finished,
//! 1 when it could not start, 2 for bad flags.

use std::process::ExitCode;

use clap::Parser as _;
use session_load::cli::LoadArgs;

#[tokio::main]
async fn main() -> ExitCode {
    let args = LoadArgs::parse();
    let command = std::env::args()
        .map(|arg| {
            if arg.starts_with("--token=") {
                "--token=…".to_owned()
            } else {
                arg
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    // Ctrl-C ends the run early; what it created is still closed and the figures written.
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match session_load::run::run(&args, &command, interrupt).await {
        Ok((_, table)) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{table}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("session-load: {e}");
            ExitCode::FAILURE
        }
    }
}
