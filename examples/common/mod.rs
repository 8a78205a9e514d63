//! What every example shares: its settings, and failing in sentences rather than a panic.

use std::future::Future;
use std::process::ExitCode;

use anyreply_client::Client;
use anyreply_core::env::Env;

/// Runs `example`; a failure is one `error:` line per problem and exit code 1.
pub(crate) fn run(example: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(example) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            for line in format!("{error:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `ANYREPLY_URL`, `ANYREPLY_API_KEY` and `ANYREPLY_ASSISTANT_ID`, every missing one named.
pub(crate) fn settings() -> anyhow::Result<(Client, i64)> {
    let mut env = Env::from_process();
    let client = Client::builder().from_env(&mut env);
    let assistant_id = env.required_parsed("ANYREPLY_ASSISTANT_ID", "1");
    env.finish(&[])?;
    Ok((client.build()?, assistant_id.unwrap_or_default()))
}
