//! `nexus-auth signals ...`: the operator's commands for signals.
//!
//! New tokens go to standard output alone, so that scripts can capture them
//! (`TOKEN=$(nexus-auth signals create sensor-7)`); every other message goes
//! to standard error.

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};

use super::StoreArgs;
use crate::secret::SignalToken;
use crate::signal_token::{self, TokenDigest};
use crate::store::{self, SignalStore, SignalSummary, StoreOptions};
use crate::time::unix_now;

/// Maximum signal id length, in characters. Longer ids could never log in.
const MAX_SIGNAL_ID_CHARS: usize = 256;

#[derive(Debug, Subcommand)]
pub enum SignalsCommand {
    /// Create a signal and print its new token once.
    Create {
        #[command(flatten)]
        target: Target,
        /// Read the token from standard input instead of generating one
        /// (at least 32 characters), for clients that already hold one.
        #[arg(long)]
        token_stdin: bool,
    },
    /// List every signal with its status.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace a signal's token and print the new one once.
    Rotate {
        #[command(flatten)]
        target: Target,
        /// How long the previous token keeps working, such as 10m or 24h;
        /// it stops at once without this.
        #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
        grace: Option<Duration>,
    },
    /// Refuse logins of a signal until it is enabled again.
    Disable {
        #[command(flatten)]
        target: Target,
    },
    /// Accept logins of a disabled signal again.
    Enable {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a signal and its tokens for good.
    Delete {
        #[command(flatten)]
        target: Target,
    },
}

/// A signal id and the store it lives in.
#[derive(Debug, Args)]
pub struct Target {
    /// The signal id: 1 to 256 characters, no control characters, no white
    /// space at either end.
    #[arg(value_name = "ID", value_parser = parse_signal_id)]
    id: String,
    #[command(flatten)]
    store: StoreArgs,
}

fn parse_signal_id(value: &str) -> Result<String, String> {
    let length = value.chars().count();
    if length == 0 || length > MAX_SIGNAL_ID_CHARS {
        return Err(format!(
            "expected 1 to {MAX_SIGNAL_ID_CHARS} characters, got {length}"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("a signal id cannot contain control characters".to_owned());
    }
    // HTTP drops white space around header values, so ` demo` would reach
    // services behind a proxy as `demo` in X-Signal-Id.
    if value.trim() != value {
        return Err("a signal id cannot start or end with white space".to_owned());
    }
    Ok(value.to_owned())
}

/// Maximum grace period, in seconds (365 days). A previous token that stays
/// valid longer is a second credential, not a migration aid.
const MAX_GRACE_SECONDS: u64 = 365 * 24 * 3600;

fn parse_grace(value: &str) -> Result<Duration, String> {
    let grace = humantime::parse_duration(value)
        .map_err(|error| format!("{error}; expected a duration such as 90s, 10m or 24h"))?;
    if grace.is_zero() {
        return Err(
            "expected a duration above zero; leave --grace out to stop the old token at once"
                .to_owned(),
        );
    }
    if grace.as_secs() > MAX_GRACE_SECONDS {
        return Err("expected at most 365 days".to_owned());
    }
    Ok(grace)
}

pub async fn run(command: SignalsCommand) -> Result<(), String> {
    match command {
        SignalsCommand::Create {
            target,
            token_stdin,
        } => {
            let token = if token_stdin {
                read_token()?
            } else {
                new_token()?
            };
            // The first signal may come before the first `serve`.
            let store = store::open(&target.store.options())
                .await
                .map_err(|error| error.to_string())?;
            store
                .create_signal(&target.id, TokenDigest::of(&token), unix_now())
                .await
                .map_err(|error| error.to_string())?;
            if token_stdin {
                eprintln!(
                    "Created the signal {:?} with the token from standard input.",
                    target.id
                );
            } else {
                eprintln!(
                    "Created the signal {:?}. Its token, shown only this once:",
                    target.id
                );
                println!("{}", token.expose());
            }
        }
        SignalsCommand::List { store } => {
            let signals = open(&store)
                .await?
                .list_signals()
                .await
                .map_err(|error| error.to_string())?;
            print_signals(&signals);
        }
        SignalsCommand::Rotate { target, grace } => {
            let token = new_token()?;
            let now = unix_now();
            let previous_expires_at = grace.map(|grace| now.saturating_add(grace.as_secs() as i64));
            let store = open(&target.store).await?;
            store
                .rotate_signal(
                    &target.id,
                    TokenDigest::of(&token),
                    previous_expires_at,
                    now,
                )
                .await
                .map_err(|error| error.to_string())?;
            match grace {
                Some(grace) => eprintln!(
                    "Rotated the token of {:?}; the previous token keeps working for {}. The new token, shown only this once:",
                    target.id,
                    humantime::format_duration(grace)
                ),
                None => eprintln!(
                    "Rotated the token of {:?}; the previous token no longer works. The new token, shown only this once:",
                    target.id
                ),
            }
            println!("{}", token.expose());
        }
        SignalsCommand::Disable { target } => {
            set_enabled(&target, false).await?;
            eprintln!("Disabled the signal {:?}; its logins now fail.", target.id);
        }
        SignalsCommand::Enable { target } => {
            set_enabled(&target, true).await?;
            eprintln!("Enabled the signal {:?}.", target.id);
        }
        SignalsCommand::Delete { target } => {
            let store = open(&target.store).await?;
            store
                .delete_signal(&target.id)
                .await
                .map_err(|error| error.to_string())?;
            eprintln!("Deleted the signal {:?}.", target.id);
        }
    }
    Ok(())
}

/// Opens the store that `args` names, which must exist already.
async fn open(args: &StoreArgs) -> Result<std::sync::Arc<dyn SignalStore>, String> {
    let options = StoreOptions {
        create_if_missing: false,
        ..args.options()
    };
    store::open(&options)
        .await
        .map_err(|error| error.to_string())
}

async fn set_enabled(target: &Target, enabled: bool) -> Result<(), String> {
    let store = open(&target.store).await?;
    store
        .set_signal_enabled(&target.id, enabled)
        .await
        .map_err(|error| error.to_string())
}

fn new_token() -> Result<SignalToken, String> {
    signal_token::generate().map_err(|error| error.to_string())
}

/// Reads a token from standard input, dropping one trailing line break so
/// that `echo "$TOKEN" | ...` imports what the operator meant.
fn read_token() -> Result<SignalToken, String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|error| format!("reading the token from standard input failed: {error}"))?;
    let value = input.strip_suffix('\n').unwrap_or(&input);
    let value = value.strip_suffix('\r').unwrap_or(value);

    let token = SignalToken::new(value);
    signal_token::check_imported(&token)
        .map_err(|error| format!("the token from standard input is rejected: {error}"))?;
    Ok(token)
}

fn print_signals(signals: &[SignalSummary]) {
    if signals.is_empty() {
        eprintln!("No signals exist; create one with `nexus-auth signals create ID`.");
        return;
    }
    let width = signals
        .iter()
        .map(|signal| signal.id.chars().count())
        .max()
        .unwrap_or(2)
        .max(2);
    println!(
        "{:<width$}  {:<8}  {:<20}  {:<20}  PREVIOUS TOKEN UNTIL",
        "ID", "STATUS", "CREATED", "ROTATED"
    );
    for signal in signals {
        println!(
            "{:<width$}  {:<8}  {:<20}  {:<20}  {}",
            signal.id,
            if signal.enabled {
                "enabled"
            } else {
                "disabled"
            },
            format_time(Some(signal.created_at)),
            format_time(signal.rotated_at),
            format_time(signal.previous_token_expires_at),
        );
    }
}

/// Formats seconds since the epoch as RFC 3339, or as the bare number when
/// it is outside the years 1970 to 9999 that RFC 3339 can write.
pub(super) fn format_time(seconds: Option<i64>) -> String {
    const YEAR_10000: i64 = 253_402_300_800;
    match seconds {
        Some(seconds @ 0..YEAR_10000) => {
            let time = UNIX_EPOCH + Duration::from_secs(seconds as u64);
            humantime::format_rfc3339_seconds(time).to_string()
        }
        Some(seconds) => seconds.to_string(),
        None => "-".to_owned(),
    }
}
