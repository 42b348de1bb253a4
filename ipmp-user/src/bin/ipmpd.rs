//! ipmpd: the IPMP daemon. Runs in the foreground and logs through tracing (RUST_LOG).

use std::os::unix::process::CommandExt as _;

use anyhow::Context as _;
use clap::Parser as _;
use ipmp::{
    cli::ipmpd::Cli,
    config::Config,
    daemon::{Daemon, Exit, Options},
    dataplane,
};
use tracing_appender::non_blocking::WorkerGuard;

fn main() -> std::process::ExitCode {
    let log = ipmp::logging::init();
    let cli = Cli::parse();
    match run(cli, log) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipmpd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `log` is dropped on return (before main reports an error) and before a re-exec, so queued
/// lines are written out first.
fn run(cli: Cli, log: WorkerGuard) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    if cli.check {
        println!("{}: ok", cli.config.display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    if cli.cleanup {
        return rt.block_on(cleanup(&config, &cli.pin_dir));
    }
    let exit = rt.block_on(async {
        let opts = Options {
            pin_dir: cli.pin_dir.clone(),
            proc_sys_net: cli.proc_sys_net.clone(),
            config_path: cli.config.clone(),
        };
        let (daemon, control) = Daemon::start(config, &opts).await?;
        // Handlers in place before READY=1 is sent: a SIGTERM right after it stops cleanly.
        let signal = signals();
        anyhow::Ok(daemon.run(control, &cli.config, signal).await?)
    })?;
    drop(rt);
    if exit == Exit::Reload {
        // Like in.mpathd on SIGHUP: start again with the same arguments; the new process
        // adopts the pinned programs, links and maps, so forwarding never stops.
        let exe = std::env::current_exe().context("cannot find ipmpd's own executable")?;
        drop(log);
        let err = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .exec();
        return Err(err).with_context(|| format!("cannot re-execute {}", exe.display()));
    }
    Ok(())
}

/// SIGTERM and SIGINT stop ipmpd; SIGHUP reloads it. The handlers are installed by this call
/// (inside the runtime), not when the future is first polled.
fn signals() -> impl Future<Output = Exit> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = handlers else {
            tracing::error!("cannot install signal handlers; stop ipmpd with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); Exit::Stopped }
            _ = int.recv() => { tracing::info!("SIGINT"); Exit::Stopped }
            _ = hup.recv() => { tracing::info!("SIGHUP: reloading"); Exit::Reload }
        }
    }
}

async fn cleanup(config: &Config, pin_dir: &std::path::Path) -> anyhow::Result<()> {
    let nl = ipmp::netlink::Netlink::connect()?;
    for g in &config.groups {
        if let Some(link) = nl.link_by_name(&g.name).await?
            && ipmp::netlink::is_ipmp_interface(&link)
        {
            nl.delete_link(link.ifindex).await?;
            println!("removed IPMP interface {}", g.name);
        }
    }
    let rules = nl.remove_member_rules().await?;
    if rules > 0 {
        println!("removed {rules} member routing rules");
    }
    dataplane::loader::cleanup(pin_dir)
        .with_context(|| format!("cannot remove {}", pin_dir.display()))?;
    println!("removed {}", pin_dir.display());
    Ok(())
}
