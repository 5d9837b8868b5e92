//! `interlink init`: a new identity and a config file that works as it is.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use interlink_node::config::TEMPLATE;
use interlink_node::identity::{self, IDENTITY_FILE};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory for identity.key and config.toml [default: $INTERLINK_HOME, else
    /// ~/.local/share/interlink].
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(super::default_data_dir);
    let keypair = identity::create(&dir)?;
    println!(
        "Created identity {} in {} (mode 0600)",
        keypair.public().to_peer_id(),
        dir.join(IDENTITY_FILE).display()
    );
    println!(
        "Back this file up: it is the node's identity and the key its offers are signed with."
    );

    let config_path = dir.join("config.toml");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&config_path)
    {
        Ok(mut file) => {
            file.write_all(TEMPLATE.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", config_path.display()))?;
            println!("Wrote {}", config_path.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            println!("Kept the existing {}", config_path.display());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create {}", config_path.display()));
        }
    }
    println!(
        "Start the node with: interlink node --config {}",
        config_path.display()
    );
    Ok(())
}
