//! The controller election: etcd's election recipe on one key. A live broker writes
//! `controller` under its own lease if nobody holds it (a transaction comparing the
//! key's create revision with 0); everyone watches the key and tries again when it
//! goes, which happens when its holder's lease expires or is revoked. etcd decides;
//! no broker counts votes.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::etcd::Etcd;
use super::membership::Lease;

pub const CONTROLLER_KEY: &str = "controller";

/// Campaigns whenever the controller key is free and this broker holds a lease.
/// `elected` says whether this broker is the controller.
pub async fn campaign(
    etcd: Etcd,
    node_id: i32,
    mut lease: watch::Receiver<Lease>,
    elected: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let value = node_id.to_string().into_bytes();
    loop {
        let held = *lease.borrow_and_update();
        if held.id == 0 {
            elected.send_replace(false);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = lease.changed() => continue,
            }
        }
        let revision = match etcd.create(CONTROLLER_KEY, value.clone(), held.id).await {
            Ok(Ok(())) => {
                if !*elected.borrow() {
                    tracing::info!(node_id, "elected controller");
                }
                elected.send_replace(true);
                match etcd.get(CONTROLLER_KEY).await {
                    Ok(Some(e)) => e.mod_revision,
                    _ => 0,
                }
            }
            Ok(Err(holder)) => {
                let mine = holder.lease == held.id;
                elected.send_replace(mine);
                holder.mod_revision
            }
            Err(e) => {
                tracing::debug!(error = %e, "controller campaign failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        // Wait for the key to change (deleted when its lease goes) or our lease to.
        let watch = etcd.watch(CONTROLLER_KEY, revision.max(1)).await;
        let Ok(mut stream) = watch else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = lease.changed() => {
                    if changed.is_err() { return; }
                    if lease.borrow().id != held.id { break; }
                }
                message = stream.message() => {
                    match message {
                        Ok(Some(m)) if m.events().iter().any(|e| e.event_type() == etcd_client::EventType::Delete) => break,
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
            }
        }
    }
}
