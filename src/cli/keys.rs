//! `nexus-auth keys ...`: list, rotate and retire the signing keys.
//!
//! A rotated or retired key stops signing on each server at its next key
//! reload, within `--key-refresh` seconds. It keeps verifying, and stays in
//! the JWKS, until every token it signed has expired, and then servers drop
//! it by themselves.

use clap::Subcommand;

use super::signals::format_time;
use super::StoreArgs;
use crate::keys::{self, SigningAlgorithm};
use crate::store::{self, SignalStore, StoreOptions, StoredKey};
use crate::time::unix_now;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List every signing key, newest first, with its status.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Generate a new signing key and make it the active one; print its id.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// Algorithm of the new key: EdDSA, ES256 or RS256. Default: the
        /// algorithm of the current active key, or EdDSA.
        #[arg(long, value_name = "ALG")]
        signing_alg: Option<SigningAlgorithm>,
    },
    /// Stop a key from signing. Retiring the active key makes a new one of
    /// the same algorithm active.
    Retire {
        /// The key id (`kid`), as `keys list` shows it. Key ids are base64url
        /// and may start with `-`.
        #[arg(value_name = "KID", allow_hyphen_values = true)]
        kid: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::List { store } => {
            let keys = open(&store)
                .await?
                .list_signing_keys()
                .await
                .map_err(|error| error.to_string())?;
            print_keys(&keys);
        }
        KeysCommand::Rotate { store, signing_alg } => {
            // A key may be made before the first `serve`, as a signal may.
            let store = store::open(&store.options())
                .await
                .map_err(|error| error.to_string())?;
            let active = store
                .active_signing_key()
                .await
                .map_err(|error| error.to_string())?;
            let algorithm = match (signing_alg, &active) {
                (Some(algorithm), _) => algorithm,
                (None, Some(active)) => active.algorithm.parse()?,
                (None, None) => SigningAlgorithm::EdDsa,
            };
            let kid = rotate(store.as_ref(), algorithm).await?;
            match active {
                Some(previous) => eprintln!(
                    "The new {algorithm} key is active. {} stopped signing and keeps verifying until its tokens expire.",
                    previous.kid
                ),
                None => eprintln!("The new {algorithm} key is active."),
            }
            println!("{kid}");
        }
        KeysCommand::Retire { kid, store } => {
            let store = open(&store).await?;
            let active = store
                .active_signing_key()
                .await
                .map_err(|error| error.to_string())?;
            match active {
                Some(active) if active.kid == kid => {
                    let algorithm: SigningAlgorithm = active.algorithm.parse()?;
                    let new_kid = rotate(store.as_ref(), algorithm).await?;
                    eprintln!(
                        "Retired {kid}, the active key, so a new {algorithm} key signs from now on: {new_kid}. {kid} keeps verifying until its tokens expire."
                    );
                }
                _ => {
                    store
                        .retire_signing_key(&kid, unix_now())
                        .await
                        .map_err(|error| error.to_string())?;
                    eprintln!("Retired {kid}; it keeps verifying until its tokens expire.");
                }
            }
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

/// Generates a key of `algorithm`, makes it active and returns its id.
async fn rotate(store: &dyn SignalStore, algorithm: SigningAlgorithm) -> Result<String, String> {
    let now = unix_now();
    let key = keys::generate(algorithm, now).map_err(|error| error.to_string())?;
    store
        .add_active_signing_key(&key, now)
        .await
        .map_err(|error| error.to_string())?;
    Ok(key.kid)
}

fn print_keys(keys: &[StoredKey]) {
    if keys.is_empty() {
        eprintln!("No signing key exists yet; `nexus-auth serve` generates one at start.");
        return;
    }
    let width = keys
        .iter()
        .map(|key| key.kid.len())
        .max()
        .unwrap_or(3)
        .max(3);
    println!(
        "{:<width$}  {:<6}  {:<20}  RETIRED",
        "KID", "ALG", "CREATED"
    );
    for key in keys {
        println!(
            "{:<width$}  {:<6}  {:<20}  {}",
            key.kid,
            key.algorithm,
            format_time(Some(key.created_at)),
            match key.retired_at {
                Some(_) => format_time(key.retired_at),
                None => "- (active)".to_owned(),
            }
        );
    }
}
