//! Writes the man pages and shell completions under `dist/` (run by `cargo xtask man`).
//! Usage: dist-pages [WORKSPACE_ROOT]

use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
        PathBuf::from,
    );
    let config = root.join("config/ipmpd.toml");
    let example = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let pages = ipmp::cli::pages::render_all(&example).context("cannot render the pages")?;
    for dir in [ipmp::cli::pages::MAN_DIR, ipmp::cli::pages::COMPLETIONS_DIR] {
        let dir = root.join(dir);
        // Start empty, so that a page no longer generated does not linger.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot empty {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for page in pages {
        let path = root.join(&page.path);
        std::fs::write(&path, &page.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", page.path);
    }
    Ok(())
}
