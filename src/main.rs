//! The `jitgate` binary: argument parsing and wiring. `anyhow` lives here and in `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jitgate: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(err) => {
            let code = cli::exit_code(&err);
            eprintln!("jitgate: {}", cli::describe(&err));
            ExitCode::from(code)
        }
    }
}
