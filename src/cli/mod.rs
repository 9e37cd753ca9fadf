//! The command line: `serve` runs the server, `signals` manages signals,
//! `keys` manages signing keys.
//!
//! Every option of `serve` also reads a `NEXUS_AUTH_*` environment variable,
//! so that container and systemd deployments need no flags.

mod keys;
mod serve;
mod signals;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::store::{StoreOptions, DEFAULT_DATABASE_URL};

pub use keys::KeysCommand;
pub use serve::ServeArgs;
pub use signals::SignalsCommand;

#[derive(Debug, Parser)]
#[command(
    name = "nexus-auth",
    version,
    about = "Exchanges a signal's id and token for a short-lived signed JWT."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP server.
    Serve(Box<ServeArgs>),
    /// Create, list, rotate, disable, enable or delete signals.
    #[command(subcommand)]
    Signals(SignalsCommand),
    /// List, rotate or retire the keys that sign tokens.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Store location, timeout and pool, shared by `serve` and every `signals`
/// and `keys` command.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Database URL: sqlite://PATH or a file path for one instance, or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE for several that
    /// share signals and keys. The SQLite file or the PostgreSQL tables are
    /// created and migrated on first use.
    #[arg(
        long,
        env = "NEXUS_AUTH_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: String,

    /// Seconds to wait for the store before giving up, connecting included;
    /// a login that waits longer gets 503.
    #[arg(
        long,
        env = "NEXUS_AUTH_STORE_TIMEOUT",
        default_value = "2",
        value_name = "SECONDS",
        value_parser = parse_store_timeout
    )]
    pub store_timeout: Duration,

    /// Connections to the database that this process keeps open at most;
    /// 10 for PostgreSQL and 4 for SQLite when not set.
    #[arg(
        long,
        env = "NEXUS_AUTH_DATABASE_MAX_CONNECTIONS",
        value_name = "COUNT",
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub database_max_connections: Option<u32>,

    /// Seconds after which an unused database connection is closed; 0
    /// keeps idle connections open.
    #[arg(
        long,
        env = "NEXUS_AUTH_DATABASE_IDLE_TIMEOUT",
        default_value = "300",
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(0..=86400)
    )]
    pub database_idle_timeout: u64,
}

impl StoreArgs {
    pub fn options(&self) -> StoreOptions {
        let idle_timeout = (self.database_idle_timeout > 0)
            .then(|| Duration::from_secs(self.database_idle_timeout));
        StoreOptions {
            max_connections: self.database_max_connections,
            idle_timeout,
            ..StoreOptions::new(self.database_url.clone(), self.store_timeout)
        }
    }
}

fn parse_store_timeout(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| "expected a number of seconds, such as 2 or 0.5".to_owned())?;
    if !(0.01..=60.0).contains(&seconds) {
        return Err("expected from 0.01 to 60 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub(crate) fn parse_bind(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        "expected an IP address and port, such as 127.0.0.1:8080 or [::1]:8080".to_owned()
    })
}

/// Parses the command line, exiting with a message on a bad setting. The
/// message names both the flag and its environment variable, because the
/// operator may have set either.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let hint = setting_hint(&error);
            let _ = error.print();
            if let Some(hint) = hint {
                eprintln!("{hint}");
            }
            std::process::exit(error.exit_code());
        }
    }
}

fn setting_hint(error: &clap::Error) -> Option<String> {
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(argument)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = argument.split_whitespace().next()?.trim_start_matches('-');

    let command = Cli::command();
    let env = command
        .get_subcommands()
        .flat_map(|sub| std::iter::once(sub).chain(sub.get_subcommands()))
        .flat_map(|sub| sub.get_arguments())
        .find(|arg| arg.get_long() == Some(flag))
        .and_then(|arg| arg.get_env())?;
    Some(format!(
        "This setting comes from --{flag} or the {} environment variable; correct whichever is set.",
        env.to_string_lossy()
    ))
}

/// Starts logging at `info` and above, or at the level that `RUST_LOG` sets,
/// to standard error, without colours. `serve` logs through `log_output`'s
/// writer thread. The short commands write each line at once, so that it
/// comes before their own messages.
pub fn init_logging(cli: &Cli) {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut builder = env_logger::Builder::from_env(env);
    if !matches!(cli.command, Command::Serve(_)) {
        builder.init();
        return;
    }
    match crate::log_output::BatchedLog::install() {
        Ok(log) => {
            builder.target(env_logger::Target::Pipe(Box::new(log)));
        }
        Err(error) => eprintln!(
            "warning: could not start the log writer thread ({error}); \
             writing each log line directly"
        ),
    }
    builder.init();
}

/// Runs the parsed command and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Signals(command) => signals::run(command).await,
        Command::Keys(command) => keys::run(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            crate::log_output::flush();
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
