//! `rtscore token create`: a fresh bearer token for the admin API and console, printed once;
//! only its sha256 is appended to the tokens file.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use rtscore::admin::auth::{Scope, create_token};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    /// The tokens file the host reads (`rtscore run --api-tokens-file`).
    #[arg(long, global = true, env = "RTSCORE_API_TOKENS_FILE", default_value = "rtscore-tokens")]
    pub tokens_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for one tenant (or, with --admin, for every tenant) and print it.
    Create {
        /// The tenant the token may read and change (its scenarios, plugins and status).
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        tenant: Option<String>,
        /// A token for every tenant (and the host-wide /status).
        #[arg(long)]
        admin: bool,
    },
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create { tenant, admin } => {
            let scope = match tenant {
                Some(t) if !admin => format!("tenant:{t}").parse::<Scope>().map_err(anyhow::Error::msg)?,
                _ => Scope::Admin,
            };
            let token = create_token(&args.tokens_file, &scope)?;
            eprintln!("created a {scope} token; its hash is in {} (the token is shown only now)", args.tokens_file.display());
            println!("{token}");
        }
    }
    Ok(())
}
