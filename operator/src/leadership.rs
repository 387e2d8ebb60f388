//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager):
//! several replicas may run; only the one holding the lease writes. Every
//! controller asks [`Leadership::is_leader`] before starting work and again
//! before each write, so a replica that loses the lease stops writing at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this replica may write.
#[derive(Debug, Clone)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// A replica that always leads (leader election disabled: one replica).
    pub fn always() -> Self {
        Leadership(Arc::new(AtomicBool::new(true)))
    }

    /// A replica that does not lead (until `set` says otherwise).
    pub fn follower() -> Self {
        Leadership(Arc::new(AtomicBool::new(false)))
    }

    /// True while this replica holds the lease.
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Records a change of leadership.
    pub fn set(&self, leader: bool) {
        self.0.store(leader, Ordering::Release);
    }

    /// Follows the lease `lease` in `namespace` as `identity` until the
    /// process ends, updating this flag on every change.
    pub async fn follow_lease(
        &self,
        client: kube::Client,
        namespace: &str,
        lease: &str,
        identity: &str,
    ) -> Result<(), kube_lease_manager::LeaseManagerError> {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, lease)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(15)
            .with_grace(5)
            .with_field_manager("portcullis-operator")
            .build()
            .await?;
        let (mut changes, task) = manager.watch().await;
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let leader = *changes.borrow_and_update();
                if leader != this.is_leader() {
                    tracing::info!(leader, "leadership changed");
                }
                this.set(leader);
                if changes.changed().await.is_err() {
                    // The lease task ended: stop writing.
                    this.set(false);
                    tracing::warn!("lease manager stopped; no longer writing");
                    break;
                }
            }
            drop(task);
        });
        Ok(())
    }
}
