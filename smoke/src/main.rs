//! `smoke ENDPOINTS_JSON`: a frontend's whole path against a deployment, step by step
//! (`scripts/smoke.sh` builds and runs it). Exit status 0 when every step passed, 1 when one
//! failed (or the run was interrupted: its clean-up still runs), 2 for bad flags.

use std::process::ExitCode;

use clap::Parser as _;
use secrecy::SecretString;
use session_smoke::cli::SmokeArgs;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = SmokeArgs::parse();
    let token = std::env::var("SMOKE_TOKEN")
        .ok()
        .filter(|token| !token.trim().is_empty())
        .map(|token| SecretString::from(token.trim().to_owned()));
    // Ctrl-C fails the step under way and still closes what the run opened.
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut out = std::io::stdout().lock();
    let outcome = session_smoke::run::run(&args.options(token), &mut out, interrupt).await;
    if outcome.failure.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
